"""Two or more people talking in one photo: the nodes that join the speakers.

``Hallo Speaker Tracks`` pads every voice to the longest with silence (so each face has audio for
every frame, a finished speaker listening on silence) and mixes them for the soundtrack; each
track then goes through its own Audio Embeds -> Face Analysis (``face_index``) -> sampler chain.
``Hallo Paste Speakers`` pastes every speaker's crop video into the photo, each through a mask
built from its own face region, in an order that never lets one crop cover another speaker's
face (hallo_core.io.composite), and streams the full frames to an mp4 with the mix.
"""

from __future__ import annotations

import os
from fractions import Fraction

import numpy as np
import torch
from comfy_api.latest import InputImpl, Types, io, ui

from . import common as C
from . import outputs as F
from . import convert
from . import options as O
from .progress import ClipProgress

MAX_SPEAKERS = 4
CHUNK = 16  # frames pasted and written at a time


def _audio_item(audio, name: str):
    """Batch item 0 of an AUDIO as ([C, T] float32 numpy, rate), or the UserError naming the input."""
    from hallo_core.errors import UserError

    if not isinstance(audio, dict) or "waveform" not in audio or "sample_rate" not in audio:
        raise UserError(f"expected an AUDIO value, got {type(audio).__name__}", name,
                        "connect a Load Audio node or another AUDIO output")
    wav = audio["waveform"]
    if not isinstance(wav, torch.Tensor) or wav.ndim != 3 or 0 in wav.shape[:2]:
        raise UserError("the waveform holds no audio", name, "give [batch, channels, samples] audio")
    sr = audio["sample_rate"]
    if isinstance(sr, float) and sr.is_integer():
        sr = int(sr)
    return wav[0].detach().float().cpu().numpy(), sr


def _as_audio(track) -> dict:
    wave, sr = track
    return {"waveform": torch.from_numpy(np.ascontiguousarray(wave)).unsqueeze(0), "sample_rate": int(sr)}


class HalloSpeakerTracks(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        audio_tip = ("Speaker {n}'s voice (first batch item). A stereo interview with one voice per channel: "
                     "split it with core 'Split Audio Channels' first.")
        return io.Schema(
            node_id="Hallo_SpeakerTracks",
            display_name="Hallo Speaker Tracks",
            category=f"{C.CATEGORY}/audio",
            description="Joins the voices of two to four people talking in one photo: every track is padded "
                        "with silence to the longest (a speaker who has finished is animated on silence, as a "
                        "listener) and all are mixed, without clipping, into the soundtrack. Each track goes to "
                        "its own Audio Embeds; the mix goes to Hallo Paste Speakers.",
            inputs=[io.Audio.Input("audio_1", tooltip=audio_tip.format(n=1)),
                    io.Audio.Input("audio_2", tooltip=audio_tip.format(n=2))]
                   + [io.Audio.Input(f"audio_{n}", optional=True, tooltip=audio_tip.format(n=n))
                      for n in range(3, MAX_SPEAKERS + 1)],
            outputs=[io.Audio.Output(display_name="mix", tooltip="Every track summed (scaled down only where it "
                                                                 "would clip): the video's soundtrack.")]
                    + [io.Audio.Output(display_name=f"track_{n}",
                                       tooltip=f"audio_{n} padded to the longest track: for speaker {n}'s Audio "
                                               "Embeds (empty when audio_{n} is not connected).")
                       for n in range(1, MAX_SPEAKERS + 1)],
        )

    @classmethod
    def execute(cls, audio_1, audio_2, audio_3=None, audio_4=None) -> io.NodeOutput:
        from hallo_core.speakers import join_tracks

        given = [(f"audio_{n}", a) for n, a in enumerate((audio_1, audio_2, audio_3, audio_4), 1) if a is not None]
        raw = [_audio_item(a, name) for name, a in given]
        names = [name for name, _ in given]
        joined = join_tracks(raw, [f"speaker {n[-1]}" for n in names], names, [f"speaker {n[-1]}'s face" for n in names])
        for w in joined.warnings:
            C.log.warning("Hallo speaker tracks: %s", w)
        tracks = {name: _as_audio(t) for name, t in zip(names, joined.tracks)}
        return io.NodeOutput(_as_audio(joined.mix), *(tracks.get(f"audio_{n}") for n in range(1, MAX_SPEAKERS + 1)))


def check_speaker_paste_inputs(max_side=None, feather=None, filename_prefix=None, fps=None):
    """None, or the UserError of the first input out of range (hallo_core.options, in the node's words)."""
    from hallo_core.errors import UserError

    try:
        O.checked(max_side=max_side, feather=feather, fps=fps)
    except UserError as e:
        return e
    why = F.prefix_problem(filename_prefix) if filename_prefix is not None else None
    return UserError(why, "filename_prefix", "give a relative prefix such as hallo2/speakers") if why else None


def _frames(frames, name: str, fps: float):
    """(iterator of [S, S, 3] frames (float 0..1 or uint8 RGB), count, rate) of an IMAGE or a VIDEO."""
    from hallo_core.errors import UserError

    if isinstance(frames, torch.Tensor):
        try:
            convert.check_image(frames, name)
        except ValueError as e:
            raise UserError(str(e), name, "connect the frames of a Hallo sampler") from None
        return (f[..., :3] for f in frames), int(frames.shape[0]), Fraction(fps).limit_denominator(1000)
    rate = Fraction(frames.get_frame_rate()).limit_denominator(100000)
    stream = frames.get_stream_source() if isinstance(frames, InputImpl.VideoFromFile) else None
    if isinstance(stream, str) and os.path.isfile(stream):
        from hallo_core.media.video import read_frames

        # decoded one at a time: a long video's frames never sit in memory together
        it = read_frames(stream)
        return it, _packets(stream), rate
    comp = frames.get_components()
    return (f[..., :3] for f in comp.images), int(comp.images.shape[0]), rate


def _packets(path: str) -> int:
    """Frames of a file's first video stream, counted from its packets (nothing is decoded).

    The containers' own counts are not used: a sampler's fragmented mp4 has none, and what ComfyUI
    estimates from it differs between versions.
    """
    import av

    with av.open(path) as c:
        return sum(1 for p in c.demux(c.streams.video[0]) if p.size)


class HalloPasteSpeakers(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        def pair(n, optional):
            return [
                C.HalloFaceDataType.Input(f"face_data_{n}", optional=optional,
                                          tooltip=f"Speaker {n}'s face: 'Hallo Face Analysis' on the photo, mode "
                                                  f"crop, face_index of that person."),
                io.MultiType.Input(f"frames_{n}", types=[io.Image, io.Video], optional=optional,
                                   tooltip=f"Speaker {n}'s generated crop: IMAGE, or the VIDEO of a sampler's file "
                                           "mode (read frame by frame)."),
            ]

        return io.Schema(
            node_id="Hallo_PasteSpeakers",
            display_name="Hallo Paste Speakers",
            category=f"{C.CATEGORY}/face",
            description="Puts the generated crops of two to four people back into the one photo they came "
                        "from: each through a mask built from its own face region, feathered, in an order that "
                        "never lets one crop cover another speaker's face (crops are cut back where they "
                        "would). Outside every crop the output is the photo. Faces whose regions overlap are "
                        "refused. 'file' mode streams the full frames into an mp4 with the audio.",
            inputs=[io.Image.Input("source", tooltip="The photo every Hallo Face Analysis node analysed (first "
                                                     "image used).")]
                   + pair(1, False) + pair(2, False) + O.inputs("max_side", "feather") + F.full_frame_inputs("hallo2/speakers") + [
                io.Audio.Input("audio", optional=True,
                               tooltip="The soundtrack: the 'mix' output of Hallo Speaker Tracks."),
            ] + pair(3, True) + pair(4, True),
            outputs=F.full_frame_outputs(),
            hidden=[io.Hidden.unique_id],
            is_output_node=True,
        )

    @classmethod
    def validate_inputs(cls, max_side, feather, filename_prefix, fps=25.0) -> bool | str:
        err = check_speaker_paste_inputs(max_side, feather, filename_prefix, fps)
        return True if err is None else str(err)

    @classmethod
    def execute(cls, source, face_data_1, frames_1, face_data_2, frames_2, max_side, feather, output_mode,
                filename_prefix, fps=25.0, audio=None, face_data_3=None, frames_3=None, face_data_4=None,
                frames_4=None) -> io.NodeOutput:
        from hallo_core.errors import UserError
        from hallo_core.speakers import plan_for_face_data

        err = check_speaker_paste_inputs(max_side, feather, filename_prefix, fps)
        if err is not None:  # a linked value is not seen by validate_inputs
            raise err
        pairs = [(n, f, v) for n, f, v in ((1, face_data_1, frames_1), (2, face_data_2, frames_2),
                                           (3, face_data_3, frames_3), (4, face_data_4, frames_4))
                 if f is not None or v is not None]
        for n, f, v in pairs:
            if f is None or v is None:
                missing = f"face_data_{n}" if f is None else f"frames_{n}"
                raise UserError(f"speaker {n} has {'frames' if f is None else 'face data'} but no "
                                f"{'face data' if f is None else 'frames'}", missing, "connect both, or neither")
        rgb = convert.image_to_rgb_uint8(source, 0)
        plan = plan_for_face_data(rgb, [f for _, f, _ in pairs], [f"face_data_{n}" for n, _, _ in pairs],
                                  int(max_side), float(feather))
        sources = [_frames(v, f"frames_{n}", float(fps)) for n, _, v in pairs]
        counts = [c for _, c, _ in sources]
        if len(set(counts)) != 1:
            listed = ", ".join(f"frames_{n}: {c}" for (n, _, _), c in zip(pairs, counts))
            raise UserError(f"the speakers' videos differ in length ({listed})", "frames_1",
                            "give every speaker a track of the same length: Hallo Speaker Tracks pads them")
        total, rate = counts[0], sources[0][2]
        if total == 0:
            raise UserError("the videos hold no frames", "frames_1", "connect the frames or VIDEO of a Hallo sampler")
        node_id = cls.hidden.unique_id if cls.hidden is not None else None
        prog = ClipProgress(node_id, clips=1, steps=max(1, total))
        C.log.info("Hallo paste speakers: %d speakers into %dx%d, paste order %s%s", len(pairs), *plan.size,
                   [pairs[i][0] for i in plan.order],
                   "".join(f"; speaker {pairs[i][0]} cut back to {m}" for i, (m, c) in
                           enumerate(zip(plan.masks, plan.cut)) if c))

        def pasted():
            its = [it for it, _, _ in sources]
            done = 0
            while done < total:
                C.interrupted()
                chunk = [[f for f in (next(it, None) for _ in range(min(CHUNK, total - done))) if f is not None]
                         for it in its]
                n = min(len(c) for c in chunk)
                if n == 0:  # a file held fewer frames than its header said
                    return
                yield plan.composite([_stack(c[:n]) for c in chunk])
                done += n
                prog.step(0, done)

        fitted = convert.fit_audio_to_frames(audio, total, float(rate)) if audio is not None else None
        if output_mode == "image":
            full = torch.from_numpy(np.concatenate(list(pasted()))).float().div_(255.0).to(C.out_device())
            video = InputImpl.VideoFromComponents(Types.VideoComponents(images=full, audio=fitted, frame_rate=rate))
            return io.NodeOutput(full, video)
        return _to_file(pasted(), plan, rate, fitted, filename_prefix)


def _stack(frames) -> np.ndarray:
    """A list of [S, S, 3] frames (float tensors in 0..1 or uint8 arrays) as [n, S, S, 3] uint8."""
    from hallo_core.media.video import frames_to_uint8

    return np.stack([frames_to_uint8(f[None] if isinstance(f, torch.Tensor) else f[None])[0] for f in frames])


def _to_file(chunks, plan, rate: Fraction, fitted, filename_prefix) -> io.NodeOutput:
    from hallo_core.media.atomic import atomic_output
    from hallo_core.media.video import Mp4Sink

    path, fname, subfolder = F.output_path(filename_prefix, False)
    last = None
    wav, sr = (convert.audio_first_item(fitted) if fitted is not None else (None, 16000))
    # a cancelled run leaves no half-written file: the mp4 appears under its name only when complete
    with atomic_output(path) as tmp:
        sink = Mp4Sink(tmp, waveform=wav, sample_rate=sr)
        sink.open(plan.size[0], plan.size[1], int(round(float(rate))))
        try:
            for full in chunks:
                sink.write_rgb(full)
                last = full[-1]
        finally:
            sink.close()
    image = torch.from_numpy(last.copy()).float().div_(255.0).unsqueeze(0).to(C.out_device())
    preview = ui.PreviewVideo([ui.SavedResult(fname, subfolder, io.FolderType.output)])
    return io.NodeOutput(image, InputImpl.VideoFromFile(path), ui=preview)


NODES = [HalloSpeakerTracks, HalloPasteSpeakers]
