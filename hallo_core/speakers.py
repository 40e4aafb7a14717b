"""Two or more people talking in one photo: each chosen face driven by its own voice, one video.

The policy both hosts share (the CLI's ``generate --speaker``, the nodes' speaker tracks and
paste-back): what a speaker is (``FACE=AUDIO[#CHANNEL]``), which speaker lists are refused, how
the tracks are padded and mixed, how the faces are framed and pasted without covering one
another, and the job that runs it all with one :class:`~hallo_core.job.Session`:

    with Session("pretrained_models") as s:
        job = SpeakersJob("photo.jpg", [parse_speaker("0=alice.wav"), parse_speaker("1=bob.wav")], "talk.mp4")
        tracks = prepare_tracks(job.speakers)
        framed = job.frame(s.models.require("face_analysis").parent)
        result = run_speakers(s, job, framed, tracks)

The models load once and serve every speaker: the cost is one face's sampling per speaker,
plus the shared parts (weights read once, audio embedding per track, pasting and encoding once).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Union

from .errors import UserError
from .job import OutputFile

PathLike = Union[str, os.PathLike]
MIN_SPEAKERS = 2


# -- who speaks -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class SpeakerSpec:
    """One person: the face index (left to right from 0), the audio file and optionally one channel."""

    face: int
    audio: PathLike
    channel: Optional[int] = None
    where: str = ""  # where the user gave it, for messages ("--speaker 0=alice.wav", a node input)

    @property
    def audio_name(self) -> str:
        name = Path(os.fspath(self.audio)).name
        return name if self.channel is None else f"{name}#{self.channel}"

    @property
    def label(self) -> str:
        return f"face {self.face} ({self.audio_name})"


def parse_speaker(text: str, option: str = "--speaker") -> SpeakerSpec:
    """``FACE=AUDIO[#CHANNEL]`` -> SpeakerSpec, or a UserError naming ``option`` and the text.

    ``#N`` at the end picks channel N (0 = the first) when N is a number and the whole text is not
    itself an existing file, so a file name holding ``#`` still works.
    """
    where = f"{option} {text}"
    face, sep, audio = str(text).partition("=")
    if not sep or not face.strip() or not audio.strip():
        raise UserError(f"a speaker is FACE=AUDIO[#CHANNEL], not {text!r}", where,
                        "e.g. --speaker 0=alice.wav --speaker 1=bob.wav (faces counted left to right from 0)")
    try:
        index = int(face.strip())
    except ValueError:
        raise UserError(f"the face of a speaker is a number counted left to right from 0, not {face.strip()!r}",
                        where, "e.g. --speaker 0=alice.wav") from None
    if index < 0:
        raise UserError(f"face index {index} is negative", where, "faces are counted left to right from 0")
    channel = None
    path, hash_, tail = audio.rpartition("#")
    if hash_ and tail.strip().isdigit() and path and not Path(os.path.expanduser(audio)).is_file():
        audio, channel = path, int(tail.strip())
    return SpeakerSpec(index, os.path.expanduser(audio), channel, where)


def check_speaker_list(specs: Sequence[SpeakerSpec], option: str = "--speaker") -> None:
    """At least two speakers, each on a face of its own."""
    if len(specs) < MIN_SPEAKERS:
        raise UserError(f"{len(specs)} speaker{'s' if len(specs) != 1 else ''} given; a conversation needs at least "
                        f"{MIN_SPEAKERS}", option, "give one --speaker FACE=AUDIO per person, or animate one face "
                        "with --audio (and --face N)")
    seen = {}
    for s in specs:
        if s.face in seen:
            raise UserError(f"face {s.face} is given to two speakers", f"{seen[s.face].where}, {s.where}",
                            "give each speaker a face of its own")
        seen[s.face] = s


# -- what they say ----------------------------------------------------------------------------------

@dataclass
class SpeakerTracks:
    """Each speaker's track padded to the longest (same order as the speakers), and their mix."""

    tracks: list  # [(float32 [C, N], rate)]
    mix: tuple  # (float32 [1, N], rate)
    warnings: List[str] = field(default_factory=list)
    seconds: List[float] = field(default_factory=list)  # each track's own length, before padding

    @property
    def duration(self) -> float:
        wave, sr = self.mix
        return wave.shape[1] / float(sr)


def prepare_tracks(specs: Sequence[SpeakerSpec]) -> SpeakerTracks:
    """Decode and check every speaker's audio (a missing ``#CHANNEL`` is a UserError), pad and mix.

    A track that is silent from start to end is a warning naming its speaker, not a refusal: that
    face is animated on silence, as a listener.
    """
    from .audio.tracks import ChannelError, load_track
    from .checks import check_audio_file

    raw = []
    for s in specs:
        check_audio_file(s.audio, s.where)  # path, decoding, NaN, length: the one-voice checks
        try:
            raw.append(load_track(s.audio, s.channel))
        except ChannelError as e:
            raise UserError(str(e), s.where, "give a channel the file has, or leave #CHANNEL out to use the "
                            "whole file") from None
    return join_tracks(raw, [f"speaker {s.label}" for s in specs], [s.where for s in specs],
                       [f"face {s.face}" for s in specs])


def join_tracks(raw: Sequence[tuple], names: Sequence[str], wheres: Sequence[str],
                faces: Optional[Sequence[str]] = None) -> SpeakerTracks:
    """Checked tracks ``(float32 [C, N], rate)``, padded to the longest and mixed (the nodes' entry).

    ``names``: how the warnings name each speaker; ``wheres``: where each track was given.
    """
    from .audio.tracks import mix_tracks, pad_tracks
    from .checks import check_audio_array

    warnings, seconds = [], []
    faces = faces or ["its face"] * len(raw)
    for (wave, sr), name, where, face in zip(raw, names, wheres, faces):
        report = check_audio_array(wave, int(sr), where)
        if report.silent:
            warnings.append(f"{name} is silent from start to end ({where}): {face} is animated on that silence, "
                            "as a listener")
        else:
            warnings += list(report.warnings)
        seconds.append(wave.shape[1] / float(sr))
    padded = pad_tracks(raw)
    return SpeakerTracks(padded, mix_tracks(padded), warnings, seconds)


# -- where they are ---------------------------------------------------------------------------------

@dataclass
class FramedSpeakers:
    """The photo's faces, each speaker's framed crop (FramedInput, "crop") and the paste plan."""

    faces: list  # every face found (FaceBox), left to right
    detector: str
    inputs: list  # FramedInput per speaker, in speaker order
    plan: object  # hallo_core.io.composite.PastePlan
    source_size: tuple

    def summary(self, specs: Sequence[SpeakerSpec]) -> List[str]:
        w, h = self.plan.size
        n = len(self.faces)
        lines = [f"{n} faces found ({self.detector}); {len(specs)} speakers pasted back into {w}x{h}, "
                 f"in the order {', '.join(f'face {specs[i].face}' for i in self.plan.order)}"]
        for s, fi, mask, cut in zip(specs, self.inputs, self.plan.masks, self.plan.cut):
            tail = f", kept off the other faces: mask {mask}" if cut else ""
            lines.append(f"speaker {s.label}: crop box {fi.framing.crop.box}{tail}")
        return lines

    def sidecar(self, specs: Sequence[SpeakerSpec], source=None) -> dict:
        plan = self.plan
        return {
            "source": os.fspath(source) if source is not None else None,
            "source_size": list(self.source_size),
            "mode": "speakers",
            "detector": self.detector,
            "faces": [[round(float(v), 1) for v in f.box] for f in self.faces],
            "face_index": None,
            "crop_box": None,
            "output_size": list(plan.size),
            "paste_order": [specs[i].face for i in plan.order],
            "speakers": [{"face": s.face, "audio": os.fspath(s.audio), "channel": s.channel,
                          "crop_box": list(fi.framing.crop.box), "face_region": list(f), "mask": list(m)}
                         for s, fi, f, m in zip(specs, self.inputs, plan.faces, plan.masks)],
        }


def frame_speakers(image, specs: Sequence[SpeakerSpec], face_models: Optional[PathLike], size: int = 512,
                   margin: Optional[float] = None, max_side: Optional[int] = None, detector: str = "auto",
                   feather: Optional[float] = None, option: str = "--speaker") -> FramedSpeakers:
    """Find the faces once, check the speakers against them, prepare each crop and plan the pastes.

    Runs the face detector and landmarker only (no generation weights). UserErrors: fewer faces than
    speakers, a face index that does not exist, two chosen faces whose regions overlap. The photo's
    own problems (no face, blank, undecodable) raise the face front end's errors, as ``--image`` does.
    """
    from .face import check_image, frame_face, get_face_detector, load_image, prepare_framed_face
    from .face.crop import DEFAULT_MARGIN, DEFAULT_MAX_SIDE
    from .face.preprocess import FaceModelPaths
    from .io.composite import FacesOverlapError, plan_pastes
    from .io.paste_back import DEFAULT_FEATHER
    from .pipeline.full_frame import FramedInput

    margin = DEFAULT_MARGIN if margin is None else margin
    max_side = DEFAULT_MAX_SIDE if max_side is None else max_side
    feather = DEFAULT_FEATHER if feather is None else feather
    rgb = check_image(load_image(image) if isinstance(image, (str, os.PathLike)) else image)
    det_path = FaceModelPaths.from_dir(face_models).detector if face_models is not None else None
    det = get_face_detector(det_path, None, detector)
    faces = frame_face(rgb, margin=margin, detector=det).faces
    n = len(faces)
    if n < len(specs):
        raise UserError(f"{len(specs)} speakers were given but the photo shows {n} face{'s' if n != 1 else ''}",
                        option, "give one --speaker per face found (faces are counted left to right from 0), "
                        "or use a photo with every speaker's face visible")
    for s in specs:
        if s.face >= n:
            raise UserError(f"face index {s.face} does not exist: {n} faces were found, numbered 0 (leftmost) to "
                            f"{n - 1} (rightmost)", s.where, "give a face index the photo has")
    inputs = []
    for s in specs:
        framing = frame_face(rgb, face_index=s.face, margin=margin, detector=det)
        face = prepare_framed_face(framing, face_models, size=size, frame="crop")
        inputs.append(FramedInput(framing, face, "crop", None))
    try:
        plan = plan_pastes(rgb, [fi.framing.crop for fi in inputs], [fi.face.face_box for fi in inputs], size,
                           max_side=max_side, feather=feather)
    except FacesOverlapError as e:
        a, b = (specs[i] for i in e.pair)
        raise UserError(f"faces {a.face} and {b.face} are too close together: their face regions overlap, so "
                        "no paste order keeps both faces whole", option,
                        "use a photo in which the speakers' faces are apart, or animate one of them with --audio "
                        "and --face") from None
    return FramedSpeakers(faces, getattr(det, "name", type(det).__name__), inputs, plan,
                          (int(rgb.shape[1]), int(rgb.shape[0])))


def plan_for_face_data(source, faces: Sequence, names: Sequence[str], max_side: Optional[int] = None,
                       feather: Optional[float] = None):
    """The paste plan for face data made by the face front end from one photo (the nodes' entry).

    ``faces``: FaceData of each speaker's crop (``crop_box`` and ``source_size`` set); ``names``: where
    each came from, for the UserErrors (whole-picture face data, another photo, one face twice,
    overlapping face regions).
    """
    from .face.crop import DEFAULT_MAX_SIDE, CropBox
    from .io.composite import FacesOverlapError, plan_pastes
    from .io.paste_back import DEFAULT_FEATHER

    h, w = source.shape[:2]
    crops = []
    for face, name in zip(faces, names):
        if getattr(face, "crop_box", None) is None:
            raise UserError("the face data is of the whole picture, so it cannot share a frame with another face",
                            name, "set the face node's mode to crop")
        made_for = tuple(int(v) for v in face.source_size)
        if made_for != (w, h):
            raise UserError(f"the face data was made from a {made_for[0]}x{made_for[1]} image, the source is {w}x{h}",
                            name, "connect the photo every face node analysed")
        crops.append(CropBox.from_box(face.crop_box, (w, h)))
    for i in range(len(faces)):
        for j in range(i):
            if crops[i] == crops[j] and tuple(faces[i].face_box) == tuple(faces[j].face_box):
                raise UserError("the same face is given twice", f"{names[j]}, {names[i]}",
                                "set another face_index on one of the face nodes")
    try:
        return plan_pastes(source, crops, [f.face_box for f in faces], [int(f.size) for f in faces],
                           max_side=DEFAULT_MAX_SIDE if max_side is None else max_side,
                           feather=DEFAULT_FEATHER if feather is None else feather)
    except FacesOverlapError as e:
        a, b = (names[i] for i in e.pair)
        raise UserError("the two faces are too close together: their face regions overlap, so no paste order "
                        "keeps both faces whole", f"{a}, {b}", "use a photo in which the speakers' faces are "
                        "apart") from None


# -- the job ---------------------------------------------------------------------------------------

def _default_settings():
    from .pipeline.generate import GenerationSettings

    return GenerationSettings()


@dataclass
class SpeakersJob(OutputFile):
    """One multi-speaker video: the photo, the speakers, the output and every frame-deciding setting."""

    image: PathLike
    speakers: List[SpeakerSpec]
    out: PathLike
    settings: object = field(default_factory=_default_settings)  # pipeline.generate.GenerationSettings
    hallo2: bool = False
    size: int = 512
    margin: Optional[float] = None
    max_side: Optional[int] = None
    detector: str = "auto"
    separator: bool = True
    audio_features: str = "auto"
    resume: bool = False
    feather: Optional[float] = None

    def frame(self, face_models: Optional[PathLike]) -> FramedSpeakers:
        return frame_speakers(self.image, self.speakers, face_models, size=self.size, margin=self.margin,
                              max_side=self.max_side, detector=self.detector, feather=self.feather)


def embed_tracks(session, job: SpeakersJob, tracks: SpeakerTracks, interrupt: Optional[Callable[[], None]] = None):
    """Each speaker's padded track as wav2vec2 features, with the session's audio models (read once)."""
    import torch

    from .audio import embed_audio

    encoder, separator = session.audio_models(job.separator)
    dtype = None if job.audio_features == "auto" else getattr(torch, job.audio_features)
    out = [embed_audio(track, encoder, separator=separator, segment_seconds=60.0 if job.hallo2 else None,
                       feature_dtype=dtype, interrupt=interrupt) for track in tracks.tracks]
    if not session.keep_audio_models:
        session.release_audio_models()  # before the diffusion weights load
    if len({a.num_frames for a in out}) != 1:  # equal lengths at one rate give equal frame counts
        raise RuntimeError(f"the padded tracks cover different frame counts: {[a.num_frames for a in out]}")
    return out


@dataclass
class SpeakersRunResult:
    """A JobResult (``hallo_core.job``) plus where the time went."""

    out: Path
    frames_written: int
    n_frames: int
    interrupted: bool
    resumed_from: int
    seconds: float
    sampling_seconds: List[float]  # each speaker's sampling (denoising + decoding), this call
    shared_seconds: float  # everything else: audio, weights, pasting, encoding

    @property
    def complete(self) -> bool:
        return not self.interrupted and self.frames_written >= self.n_frames


def run_speakers(session, job: SpeakersJob, framed: FramedSpeakers, tracks: SpeakerTracks, features=None,
                 progress=None, should_stop: Optional[Callable[[], bool]] = None) -> SpeakersRunResult:
    """Generate ``job.out``: every speaker's crop sampled with the one network, composited, streamed.

    ``progress(speaker, clip, n_clips, step, n_steps, frames or None)``; ``should_stop`` is polled
    before every denoising step. A stopped run leaves a playable file and one checkpoint for all
    speakers; ``job.resume`` continues it (ResumeMismatchError when it belongs to another job).
    """
    from .job import _stat, job_settings
    from .media.video import Mp4Sink
    from .pipeline.generate import ClipRun
    from .pipeline.speakers import SpeakersCheckpoint, check_start, speakers_resume_point, stream_speakers

    t0 = time.time()
    if features is None:
        features = embed_tracks(session, job, tracks)
    out = job.out_path
    start = speakers_resume_point(out, job.resume)
    net, vae = session.net(job.hallo2), session.vae()
    settings = job_settings(job)
    model_id = str(session.models.net(job.hallo2).name)
    sampling = [0.0] * len(framed.inputs)
    runs = []
    for i, (fi, audio) in enumerate(zip(framed.inputs, features)):
        def steps(k, n, step, n_steps, frames, i=i):
            if progress is not None:
                progress(i, k, n, step, n_steps, frames)

        runs.append(ClipRun(net, vae, fi.face, audio, settings, start=start.states[i] if start is not None else None,
                            model_id=model_id, should_stop=should_stop, callback=steps))
    check_start(start, runs, framed.plan.describe())
    ckpt = SpeakersCheckpoint(job.checkpoint)
    wave, sr = tracks.mix
    before = _stat(out)
    done = None
    try:
        done = stream_speakers(runs, framed.plan, Mp4Sink(out, wave, sr), ckpt, callback=progress,
                               timings=sampling)
    finally:
        if done is not None and not done.interrupted:
            ckpt.discard()
        written = done.frames_written if done is not None else (ckpt.load().frames_done if ckpt.exists() else 0)
        if written > 0:
            write_speakers_sidecar(out, framed, job.speakers, Path(os.fspath(job.image)).resolve())
        elif start is None and _stat(out) not in (None, before):
            from .pipeline.full_frame import sidecar_path

            for p in (out, sidecar_path(out)):
                p.unlink(missing_ok=True)
    seconds = time.time() - t0
    return SpeakersRunResult(out, written, features[0].num_frames, done.interrupted,
                             start.frames_done if start is not None else 0, seconds, sampling,
                             max(0.0, seconds - sum(sampling)))


def write_speakers_sidecar(video, framed: FramedSpeakers, specs: Sequence[SpeakerSpec], source=None) -> Path:
    """``OUT.mp4.framing.json``: the faces, each speaker's crop, face region and mask, the paste order."""
    import json

    from .pipeline.full_frame import sidecar_path

    path = sidecar_path(video)
    path.write_text(json.dumps(framed.sidecar(specs, source), indent=2))
    return path


def cost_note(result: SpeakersRunResult, specs: Sequence[SpeakerSpec]) -> str:
    """The closing line's account: N times one face's sampling, plus what the speakers shared."""
    n = len(specs)
    each = ", ".join(f"{s.label} {t:.1f} s" for s, t in zip(specs, result.sampling_seconds))
    return (f"{n} speakers, one face's sampling each ({each}); shared by all: the weights, read once, "
            f"pasting and encoding ({result.shared_seconds:.1f} s)")
