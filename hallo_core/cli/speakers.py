"""``hallo generate --speaker FACE=AUDIO[#CHANNEL] ...``: several faces of one photo, each with its voice.

The checks of a one-voice run, per speaker, all before any weights are read: the speakers
themselves (two or more, a face each, not mixed with --audio), each track (decodes, has the
#CHANNEL asked for; silent from start to end is a warning naming the speaker), the photo's faces
(enough of them, the indices exist, no two chosen face regions overlap), then the weights, read
once for every speaker, and the lockstep clip loop under the interrupt guard.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from ..errors import UserError, one_line
from ..options import check_options, unset_to_none

OPTION = "--speaker"


def _refuse_mixed(a) -> None:
    if a.audio is not None:
        raise UserError("--speaker and --audio cannot be combined", "audio",
                        "give every voice as --speaker FACE=AUDIO, or one --audio (with --face N) for one face")
    if unset_to_none("face", a.face) is not None:
        raise UserError("--face chooses the one face of a one-voice run; each --speaker names its own face", "face",
                        "leave --face out (e.g. --speaker 0=alice.wav --speaker 1=bob.wav)")
    if a.frame != "auto":
        raise UserError(f"--frame {a.frame} makes one face's video; --speaker pastes every face back into the photo",
                        "frame", "leave --frame out")


def _side_file_clash(a, specs) -> None:
    from .generate import SIDE_FILES

    out = os.path.expanduser(os.fspath(a.out))
    given = [("image", a.image)] + [(s.where, s.audio) for s in specs]
    for option, value in given:
        p = Path(os.path.expanduser(os.fspath(value))).resolve()
        for suffix in SIDE_FILES:
            if p == Path(out + suffix).resolve():
                raise UserError(f"{value} is a file generate writes next to {{=out}} ({Path(out).name}{suffix})",
                                option, "give the original input file, or choose another {=out}")


def _frame(session, job):
    """Find the faces and plan the pastes; a photo that cannot be animated is a user error for --image."""
    try:
        from ..face.errors import BadImageError, FaceIndexError
    except ImportError as e:
        raise UserError(f"the face front end cannot be imported ({one_line(e, 160)})", "install",
                        "pip install -r requirements.txt") from e
    try:
        return job.frame(session.models.require("face_analysis").parent)
    except FaceIndexError as e:
        raise UserError(e.what, OPTION, e.fix) from e
    except BadImageError as e:
        raise UserError(e.what, "image", "use a photo in which every speaker's face is clearly visible") from e


def _checks(a):
    """Everything that can fail before the weights are read: (session, job, tracks, framed)."""
    from .. import checks
    from ..job import Session
    from ..media.atomic import check_output_path
    from ..pipeline.generate import GenerationSettings
    from ..speakers import SpeakersJob, check_speaker_list, parse_speaker, prepare_tracks
    from ..errors import fill
    from .common import device as _device, dtype as _dtype, fetch as _fetch, words
    from .generate import GENERATE_FAST_OPTIONS, GENERATE_OPTIONS, SETTINGS, _check_soundtrack_rate, _missing_models

    _refuse_mixed(a)
    specs = [parse_speaker(t, OPTION) for t in a.speaker]
    check_speaker_list(specs, OPTION)
    for k, v in check_options({k: getattr(a, k) for k in GENERATE_OPTIONS + GENERATE_FAST_OPTIONS}).items():
        setattr(a, k, v)
    opts = {k: getattr(a, k) for k in SETTINGS}
    opts["cfg_steps"] = unset_to_none("cfg_steps", opts["cfg_steps"])
    _side_file_clash(a, specs)
    dev = checks.check_device(_device(a.device))
    check_output_path(a.out, {"image": a.image, "models": a.models, OPTION: [s.audio for s in specs]})
    checks.check_image_file(a.image)
    tracks = prepare_tracks(specs)
    for w in tracks.warnings:  # said now: a later check may end the run
        print(f"warning: {fill(w, words)}", file=sys.stderr)
    _check_soundtrack_rate(tracks.mix[1])
    out = Path(os.path.expanduser(os.fspath(a.out)))
    ckpt = out.with_name(out.name + ".resume.pt")
    if not a.resume and ckpt.is_file() and out.is_file():
        raise UserError(f"{out} holds an interrupted run (its checkpoint {ckpt.name} is next to it)", "out",
                        f"add --resume to continue it, or delete {ckpt.name} (or choose another --out) to start over")
    bundle = "hallo2" if a.hallo2 else "hallo"
    if a.download:
        _fetch(a.models, bundle)
    _missing_models(a.models, bundle)
    notes = checks.check_model_files(a.models, bundle, separator=not a.no_separator)
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    session = Session(a.models, device=str(dev), dtype=_dtype(a.dtype) if a.dtype else None, keep_audio_models=False)
    settings = GenerationSettings(
        steps=opts["steps"], cfg=opts["cfg"], seed=opts["seed"], pose_weight=opts["pose_weight"],
        face_weight=opts["face_weight"], lip_weight=opts["lip_weight"], scheduler=a.scheduler,
        cfg_steps=opts["cfg_steps"], mask_rate=opts["mask_rate"])
    job = SpeakersJob(a.image, specs, a.out, settings, hallo2=a.hallo2, size=opts["size"], margin=a.margin,
                      max_side=a.max_side, detector=a.detector, separator=not a.no_separator,
                      audio_features=a.audio_features, resume=a.resume)
    framed = _frame(session, job)
    for line in framed.summary(specs):
        print("face:", line, file=sys.stderr)
    for s, fi in zip(specs, framed.inputs):
        for note in fi.face.notes:
            print(f"face {s.face}:", note, file=sys.stderr)
    return session, job, tracks, framed


def run_speakers(a) -> int:
    session, job, tracks, framed = _checks(a)
    a.interrupt_note = f"nothing was written yet; run again with: {a.prog} {shlex.join(a.argv)}"

    from tqdm import tqdm

    from ..pipeline.resume import ResumeMismatchError
    from ..pipeline.speakers import load_speakers_state
    from ..speakers import cost_note, embed_tracks

    specs = job.speakers
    features = embed_tracks(session, job, tracks, interrupt=a.guard.check)
    n_clips = -(-features[0].num_frames // job.settings.clip_frames)
    out, ckpt = job.out_path, job.checkpoint
    if job.resume and ckpt.is_file() and out.is_file():
        try:
            state = load_speakers_state(ckpt)
            print(f"resuming {out} at clip {state.next_clip + 1} of {n_clips} ({state.frames_done} frames kept)",
                  file=sys.stderr)
        except ResumeMismatchError:
            pass  # refused below with the one message
    elif job.resume:
        print(f"--resume: no checkpoint {ckpt} to continue; starting from the beginning", file=sys.stderr)
    n = len(specs)
    bar = tqdm(total=n_clips * job.settings.steps * n, unit="step", desc="clips x speakers x steps")

    def progress(speaker, clip, n_c, step, n_steps, frames):
        bar.n = (clip * n + speaker) * n_steps + step
        bar.set_postfix_str(f"clip {clip + 1}/{n_c}, speaker {speaker + 1}/{n}: {specs[speaker].label}")
        bar.refresh()

    from ..speakers import run_speakers as run

    guard = a.guard
    try:
        with guard.soft():  # from here a signal ends the run at the step in flight
            result = run(session, job, framed, tracks, features, progress=progress, should_stop=guard.should_stop)
    except KeyboardInterrupt:  # a second signal: the finished clips are on disk with their checkpoint
        bar.close()
        return _interrupted(a, out, load_speakers_state(ckpt).frames_done if ckpt.is_file() else 0)
    except ResumeMismatchError as e:
        bar.close()
        raise UserError(f"the resume checkpoint {ckpt} was written for other speakers, inputs or settings", "resume",
                        f"give the speakers, inputs and settings of the interrupted run, or delete {ckpt.name} to "
                        "start over") from e
    bar.close()
    if result.interrupted:
        return _interrupted(a, out, result.frames_written)
    print(f"wrote {out} ({result.frames_written} frames, {result.seconds:.1f} s): {cost_note(result, specs)}")
    return 0


def _interrupted(a, out: Path, frames: int) -> int:
    from .generate import report_interrupted  # the same hint and exit code as one speaker's run

    return report_interrupted(a, out, frames)
