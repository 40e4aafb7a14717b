"""``hallo generate``: every check first, then the weights, then the clip loop under the interrupt guard.

Order: the option ranges, the device, the output path, the image, the audio, the model files
(their key lists only), then the face (running the detector and the landmarker is that check),
and only then the weights of wav2vec2, the network and the VAE. A signal while those load
stops at once (nothing is on disk yet). Once frames stream into ``--out`` the first signal
ends the run at the step in flight: the finished clips stay in a playable mp4 next to their
resume checkpoint, and one line names the ``--resume`` command.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from ..errors import InstallError, OutputError, UserError, one_line
from ..options import check_options, unset_to_none
from .interrupts import interrupt_hint, print_hint

# the schema's options of generate (hallo_core.options), in the order --help lists them
GENERATE_OPTIONS = ("steps", "cfg", "seed", "pose_weight", "face_weight", "lip_weight", "size", "face", "frame",
                    "margin", "max_side", "detector", "no_face")
GENERATE_FAST_OPTIONS = ("mask_rate", "scheduler", "cfg_steps", "audio_features", "no_separator")
# the options that become GenerationSettings (the others decide framing, audio and models)
SETTINGS = ("steps", "cfg", "seed", "pose_weight", "face_weight", "lip_weight", "size", "mask_rate", "cfg_steps")
# what generate writes next to --out besides the video
SIDE_FILES = (".resume.pt", ".resume.pt.tmp", ".framing.json", ".partial")
FPS = 25


def _side_file_clash(a) -> None:
    out = os.path.expanduser(os.fspath(a.out))
    for key, value in (("image", a.image), ("audio", a.audio)):
        if value is None:
            continue
        given = Path(os.path.expanduser(os.fspath(value))).resolve()
        for suffix in SIDE_FILES:
            if given == Path(out + suffix).resolve():
                raise UserError(f"{value} is a file generate writes next to {{=out}} ({Path(out).name}{suffix})",
                                key, "give the original input file, or choose another {=out}")


def _missing_models(models, bundle: str) -> None:
    """Every absent required component in one line (check_model_files stops at the first)."""
    from ..assets import layout as md
    from .common import OPTIONAL_COMPONENTS

    try:
        m = md.resolve(models)
    except md.ModelFileMissing:
        return  # check_model_files names the folder
    missing = []
    for c in md.BUNDLES[bundle]:
        if c in OPTIONAL_COMPONENTS:
            continue
        try:
            m.net(c == "hallo2") if c in ("hallo", "hallo2") else m.require(c)
        except md.ModelFileMissing:
            missing.append(c)
    if len(missing) > 1:
        repos = " and ".join(md.repo_url(r) for r in sorted({md.COMPONENTS[c][1] for c in missing}))
        raise md.ModelFileMissing("missing " + ", ".join(f"{c} ({md.rel_path(c)})" for c in missing) + f" in {m.root}",
                                  fix=f"run `python -m hallo_core download --models {m.root} --which {bundle}` or add "
                                      f"--download, or download them by hand from {repos} into {m.root}",
                                  component=missing[0], path=str(m.root))


def _check_soundtrack_rate(sample_rate: int) -> None:
    """The mp4 carries the audio as given, in AAC, whose encoder takes only its own rates: a
    25 kHz file would otherwise fail in the encoder once the first clip is done."""
    import av

    rates = sorted(av.codec.Codec("aac", "w").audio_rates or ())
    if rates and int(sample_rate) not in rates:
        raise UserError(f"the audio's sample rate, {sample_rate} Hz, cannot be carried by the mp4's AAC soundtrack",
                        "audio", f"resample it to one of {', '.join(str(r) for r in rates if r >= 8000)} Hz "
                        "(e.g. 16000 or 48000)")


def _frame(a, session, job):
    """Find and prepare the face; the face front end's errors name the input they concern."""
    try:
        from ..face.errors import NoFaceError
    except ImportError as e:
        raise InstallError(f"the face front end cannot be imported ({one_line(e, 160)})",
                           fix="pip install -r requirements.txt") from e
    try:
        return session.frame(job)
    except NoFaceError as e:
        if job.face is None:
            raise
        raise NoFaceError(e.what, "face", "leave {=face} out, or use a photo with that face") from None


def _job(a, opts):
    from ..job import GenerateJob
    from ..pipeline.generate import GenerationSettings

    settings = GenerationSettings(
        steps=opts["steps"], cfg=opts["cfg"], seed=opts["seed"], pose_weight=opts["pose_weight"],
        face_weight=opts["face_weight"], lip_weight=opts["lip_weight"], scheduler=a.scheduler,
        cfg_steps=opts["cfg_steps"], mask_rate=opts["mask_rate"])
    return GenerateJob(a.image, a.audio, a.out, settings, hallo2=a.hallo2, size=opts["size"],
                       face=unset_to_none("face", a.face),
                       frame=a.frame, margin=a.margin, max_side=a.max_side, detector=a.detector,
                       no_face=a.no_face, separator=not a.no_separator, audio_features=a.audio_features,
                       resume=a.resume)


def check_job(a, fetched=None):
    """generate's checks of one job up to the model files (``hallo batch`` runs them per row):
    (preflight, job). ``fetched``: bundles already downloaded and checked in this process."""
    from ..checks import check_model_files
    from .common import device as _device, fetch as _fetch, print_findings as _print_findings
    from .preflight import preflight_generate

    # the ranges first: a typo is reported before torch is even imported
    for k, v in check_options({k: getattr(a, k) for k in GENERATE_OPTIONS + GENERATE_FAST_OPTIONS}).items():
        setattr(a, k, v)
    opts = {k: getattr(a, k) for k in SETTINGS}
    opts["cfg_steps"] = unset_to_none("cfg_steps", opts["cfg_steps"])
    _side_file_clash(a)
    bundle = "hallo2" if a.hallo2 else "hallo"
    pf = preflight_generate(a.models, a.image, a.audio, a.out, opts, device=_device(a.device), hallo2=a.hallo2,
                            separator=not a.no_separator, resume=a.resume, check_models=False)
    _check_soundtrack_rate(pf.audio.sample_rate)
    out = Path(os.path.expanduser(os.fspath(a.out)))
    ckpt = out.with_name(out.name + ".resume.pt")
    if not a.resume and ckpt.is_file() and out.is_file():
        raise OutputError(f"{out} holds an interrupted run (its checkpoint {ckpt.name} is next to it)", "out",
                          f"add --resume to continue it, or delete {ckpt.name} (or choose another --out) to start over")
    models_key = (bundle, not a.no_separator)
    if fetched is None or models_key not in fetched:
        if a.download:
            _fetch(a.models, bundle)
        _missing_models(a.models, bundle)
        pf.notes += check_model_files(a.models, bundle, separator=not a.no_separator)
        if fetched is not None:
            fetched.add(models_key)
    _print_findings(pf)
    return pf, _job(a, pf.options)


def _checks(a):
    """Everything that can fail before the weights are read: (preflight, session, job, framed input)."""
    from ..job import Session
    from .common import dtype as _dtype

    pf, job = check_job(a)
    session = Session(a.models, device=str(pf.device), dtype=_dtype(a.dtype) if a.dtype else None,
                      keep_audio_models=False)
    framed = _frame(a, session, job)
    print("face:", framed.summary(), file=sys.stderr)
    for note in framed.face.notes:
        print("face:", note, file=sys.stderr)
    return pf, session, job, framed


def run_generate(a) -> int:
    pf, session, job, framed = _checks(a)
    a.interrupt_note = f"nothing was written yet; run again with: {a.prog} {shlex.join(a.argv)}"

    from tqdm import tqdm

    from ..pipeline.resume import load_state

    audio = session.embed(job)
    n_clips = -(-audio.num_frames // job.settings.clip_frames)
    out, ckpt = job.out_path, job.checkpoint
    if job.resume and ckpt.is_file() and out.is_file():
        state = load_state(ckpt)
        print(f"resuming {out} at clip {state.next_clip + 1} of {n_clips} ({state.frames_done} frames kept)",
              file=sys.stderr)
    elif job.resume:
        print(f"--resume: no checkpoint {ckpt} to continue; starting from the beginning", file=sys.stderr)
    bar = tqdm(total=n_clips * job.settings.steps, unit="step", desc="clips x steps")

    def progress(clip, n, step, n_steps, frames):
        bar.n = clip * n_steps + step
        bar.set_postfix_str(f"clip {clip + 1}/{n}")
        bar.refresh()

    guard = a.guard
    try:
        with guard.soft():  # from here a signal ends the run at the step in flight
            result = session.run(job, framed=framed, audio=audio, progress=progress, should_stop=guard.should_stop)
    except KeyboardInterrupt:  # a second signal: the finished clips are on disk with their checkpoint
        bar.close()
        return report_interrupted(a, out, load_state(ckpt).frames_done if ckpt.is_file() else 0)
    except Exception:
        bar.close()  # the error line starts a line of its own
        raise
    bar.close()
    if result.interrupted:
        return report_interrupted(a, out, result.frames_written)
    print(f"wrote {out} ({result.frames_written} frames, {result.seconds:.1f} s)")
    return 0


def report_interrupted(a, out: Path, frames: int) -> int:
    print_hint(interrupt_hint(out, frames, FPS, a.argv, a.guard.signal_name))
    return a.guard.exit_code
