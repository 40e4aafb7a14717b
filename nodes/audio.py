"""Audio embedding node: AUDIO -> Hallo audio embeds (+ frame count, AUDIO fitted to the video)."""

from __future__ import annotations

import torch

from comfy_api.latest import io

from . import common as C
from . import convert
from . import options as O
from .progress import TaskProgress

FPS = 25  # Hallo's audio features are computed at 25 video frames per second (640 samples at 16 kHz)


def checked_audio(audio) -> tuple[torch.Tensor, int]:
    """Batch item 0 of an AUDIO as ([C, T] float32, sample rate), after the CLI's audio checks.

    NaN/inf, empty or shorter than one video frame is a UserError with the CLI's words (``where`` is
    the input's name); near-silence is only a warning, as on the CLI: a still face is a legitimate
    video, and refusing it here while the CLI makes it would make the two disagree.
    """
    from hallo_core.checks import check_audio_array
    from hallo_core.errors import UserError

    if not isinstance(audio, dict) or "waveform" not in audio or "sample_rate" not in audio:
        raise UserError(f"expected an AUDIO value (waveform and sample rate), got {type(audio).__name__}", "audio",
                        "connect a Load Audio node or another AUDIO output")
    wav = audio["waveform"]
    if not isinstance(wav, torch.Tensor) or wav.ndim != 3:
        shape = tuple(wav.shape) if isinstance(wav, torch.Tensor) else type(wav).__name__
        raise UserError(f"the waveform has shape {shape}", "audio", "give [batch, channels, samples] audio")
    if wav.shape[0] == 0 or wav.shape[1] == 0:
        raise UserError("the audio holds no samples", "audio", "give a speech recording")
    sr = audio["sample_rate"]
    if isinstance(sr, float) and sr.is_integer():
        sr = int(sr)  # some nodes hand the rate on as a float
    try:
        report = check_audio_array(wav[0], sr, "audio")
    except UserError as e:
        raise O.node_error(e) from None
    for warning in report.warnings:
        C.log.warning("Hallo audio embeds: %s", O.node_text(warning))
    return convert.audio_first_item(audio)


class HalloAudioEmbeds(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="Hallo_AudioEmbeds",
            display_name="Hallo Audio Embeds",
            category=f"{C.CATEGORY}/audio",
            description="Turns any AUDIO (any rate, mono or stereo, any length) into Hallo's wav2vec2 features "
                        "at the video frame rate. Long audio is processed in 60 s segments.",
            inputs=[
                C.HalloAudioModelsType.Input("audio_models", tooltip="From 'Hallo Audio Models Loader'."),
                io.Audio.Input("audio", tooltip="The speech that drives the lips. Only the first item of a "
                                                "batch is used; stereo is downmixed."),
                io.Boolean.Input("segment_60s", default=True,
                                 tooltip="Process the audio in 60 s segments (Hallo2; memory stays bounded for "
                                         "hour-long audio). Off: one pass over the whole audio (Hallo v1)."),
            ],
            outputs=[
                C.HalloAudioEmbedsType.Output(display_name="audio_embeds",
                                              tooltip="wav2vec2 layers 1-12 per video frame, padded to whole "
                                                      "16-frame clips."),
                io.Int.Output(display_name="frame_count", tooltip="Video frames that cover the audio "
                                                                  "(the output video's length)."),
                io.Audio.Output(display_name="audio", tooltip="The original audio trimmed/padded to exactly "
                                                               "frame_count / fps seconds, for Create Video."),
                io.Float.Output(display_name="fps", tooltip="The frame rate (25, as Hallo was trained), for "
                                                            "Create Video."),
            ],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, audio_models, audio, segment_60s) -> io.NodeOutput:
        fps = FPS
        wav, sr = checked_audio(audio)
        C.load_gpu([audio_models.patcher], full=True)  # transformers modules: no partial loading
        node = cls.hidden.unique_id if cls.hidden is not None else None
        task = ("separating vocals and encoding the audio (wav2vec2)" if audio_models.separator_path
                else "encoding the audio (wav2vec2)")
        prog = TaskProgress(node, task, 1, "part" if segment_60s else "")

        def progress(done, total):  # a separation or encoding pass of one (60 s) segment
            prog.update(done, total)

        from hallo_core.audio import embed_audio, load_separator

        # the onnxruntime separator session lives only for this call
        separator = load_separator(audio_models.separator_path) if audio_models.separator_path else None
        try:
            feats = embed_audio({"waveform": wav.unsqueeze(0), "sample_rate": sr}, audio_models.wav2vec,
                                separator=separator, segment_seconds=60.0 if segment_60s else None,
                                progress=progress, interrupt=C.interrupted)
        finally:
            del separator
        feats.features = feats.features.to(C.out_device())
        fitted = convert.fit_audio_to_frames(audio, feats.num_frames, fps)
        return io.NodeOutput(feats, int(feats.num_frames), fitted, float(fps))


NODES = [HalloAudioEmbeds]
