"""``python -m hallo_core`` end to end as a subprocess: tiny random models in the official layout,
the real fixture portrait and the first 0.8 s of the fixture speech.

The first generate and the Ctrl-C'd run start a cold interpreter, as a user does; the refused,
killed and resumed runs are children forked from a warm one (tests/support/cli_runner.py), which
skips the seconds of imports per run. The resumed video must equal the cold run's frames, so the
two starts are compared as well."""

from __future__ import annotations

import argparse
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
# same place as conftest.py's fixtures_dir (a module-scoped fixture cannot use that function-scoped one)
FIXTURES = Path(os.environ.get("HALLO_SHARED", REPO.parent / "shared")) / "fixtures"
SECONDS = 0.8  # 20 frames at 25 fps: two clips (16 + 4), so the clip chaining runs too


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hallo_core", *args], cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=300, **kw)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    import soundfile as sf

    from tests.support.models_mirror import tiny_models

    if not FIXTURES.is_dir():
        pytest.skip(f"real fixtures not found at {FIXTURES} (../shared is absent)")
    fixtures_dir = FIXTURES
    root = tmp_path_factory.mktemp("cli_e2e")
    models = tiny_models(root / "models")
    from tests.landmarks_env import offline_landmarks_skip_reason, write_tasks_bundle

    if offline_landmarks_skip_reason():  # no legacy FaceMesh here: run the Tasks path on a real-model bundle
        from hallo_core.face.landmarks import TASK_FILENAME

        if not write_tasks_bundle(models / "face_analysis" / "models" / TASK_FILENAME):
            pytest.skip(offline_landmarks_skip_reason())
    wave, sr = sf.read(str(fixtures_dir / "speech_1.wav"), dtype="float32")
    wav = root / "short.wav"
    sf.write(str(wav), wave[: int(SECONDS * sr)], sr)
    from tests.support import cli_runner

    (root / "logs").mkdir()
    warm = cli_runner.WarmCli(env=_env(), log_dir=root / "logs") if cli_runner.available() else None
    yield {"models": models, "wav": wav, "image": fixtures_dir / "portrait_5.jpg", "root": root, "warm": warm}
    if warm is not None:
        warm.close()


def _warm(inp):
    if inp["warm"] is None:
        pytest.skip("the warm CLI runner needs os.fork")
    return inp["warm"]


def _generate_args(inp, out: Path, *extra: str) -> list:
    return ["generate", "--models", str(inp["models"]), "--image", str(inp["image"]), "--audio", str(inp["wav"]),
            "--out", str(out), "--size", "64", "--steps", "2", "--device", "cpu", *extra]


def _probe(path: Path):
    import av

    with av.open(str(path)) as c:
        v = c.streams.video[0]
        rate, size = v.average_rate, (v.width, v.height)
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(v)]
    with av.open(str(path)) as c:
        a = c.streams.audio[0]
        audio_s = sum(f.samples for f in c.decode(a)) / a.rate
    return np.stack(frames), rate, size, audio_s


def test_help_lists_every_subcommand_and_upscale_options():
    from hallo_core.cli.main import _parser

    top = _parser().format_help()  # in process: each interpreter start costs seconds of CPU
    for cmd in ("generate", "batch", "upscale", "convert", "download", "doctor"):
        assert cmd in top
    up = _cli("upscale", "--help")
    assert up.returncode == 0
    for opt in ("--input", "--output", "--upscale", "--fidelity-weight", "--models", "--bg-tile",
                "--face-upsample", "--missing-face"):
        assert opt in up.stdout
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    gen = sub.choices["generate"].format_help()
    for opt in ("--models", "--image", "--audio", "--hallo2", "--resume", "--size", "--steps"):
        assert opt in gen
    assert "default: 40" in gen  # defaults are shown


def test_generate_writes_mp4_with_audio_and_progress(inputs):
    out = inputs["root"] / "hallo.mp4"
    r = _cli(*_generate_args(inputs, out))
    assert r.returncode == 0, r.stderr[-3000:]
    frames, rate, size, audio_s = _probe(out)
    expected = math.ceil(SECONDS * 25)
    assert frames.shape[0] == expected
    assert size == (64, 64)
    assert rate == 25
    assert abs(audio_s - SECONDS) < 0.05
    assert abs(audio_s - frames.shape[0] / 25) < 0.05
    assert frames.std() > 1.0  # not a blank video
    # tqdm's bar over clips x steps goes to stderr and reaches the end
    assert "clips x steps" in r.stderr and "4/4" in r.stderr and "clip 2/2" in r.stderr
    assert f"({expected} frames" in r.stdout
    assert not out.with_name(out.name + ".resume.pt").exists()  # a finished run leaves no checkpoint


def test_interrupted_run_refuses_other_settings_then_resumes_to_the_same_video(inputs):
    """Ctrl-C once the first clip is written: exit 130, the clip kept with its checkpoint; a
    --resume with another seed is refused without touching it; --resume finishes the video to
    the frames of the uninterrupted run and removes the checkpoint."""
    full = inputs["root"] / "hallo.mp4"
    if not full.is_file():
        pytest.skip("needs the generate test's output")
    from tests.support.cli_signals import interrupt_after_first_clip

    warm = _warm(inputs)
    out = inputs["root"] / "hallo_interrupted.mp4"
    ckpt = out.with_name(out.name + ".resume.pt")
    # a cold interpreter, as a user's Ctrl-C reaches it; the refused and the resumed runs are warm
    rc, err, _ = interrupt_after_first_clip([sys.executable, "-m", "hallo_core", *_generate_args(inputs, out)],
                                            steps=2, env=_env(), cwd=REPO)
    assert rc == 130, err[-3000:]
    assert "Traceback" not in err and "--resume" in err.strip().splitlines()[-1]
    assert ckpt.is_file() and _probe(out)[0].shape[0] == 16
    before = out.read_bytes()
    r = warm.run(_generate_args(inputs, out, "--resume", "--seed", "7"), REPO)
    assert r.returncode == 2 and "resume checkpoint" in r.stderr
    assert out.read_bytes() == before and ckpt.is_file()
    r = warm.run(_generate_args(inputs, out, "--resume"), REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"resuming {out} at clip 2 of 2" in r.stderr
    assert not ckpt.exists()
    assert np.array_equal(_probe(out)[0], _probe(full)[0])


def test_hallo2_killed_mid_run_resumes_to_the_same_video(inputs):
    """--hallo2 through the CLI, SIGKILLed from outside once a resume checkpoint is on disk, then
    --resume: the finished video decodes to the frames of an uninterrupted run."""
    import soundfile as sf
    import torch

    warm = _warm(inputs)
    root = inputs["root"]
    wave, sr = sf.read(str(FIXTURES / "speech_1.wav"), dtype="float32")
    wav = root / "long.wav"
    clips = 4  # a clip's checkpoint is written once the next clip is in the file: the kill lands with 1 or 2 left
    seconds = clips * 16 / 25
    sf.write(str(wav), wave[: int(seconds * sr)], sr)
    args = dict(inputs, wav=wav)

    full = root / "h2_full.mp4"
    r = warm.run(_generate_args(args, full, "--hallo2"), REPO)
    assert r.returncode == 0, r.stderr[-3000:]

    out = root / "h2_killed.mp4"
    ckpt = out.with_name(out.name + ".resume.pt")
    r = warm.signal_when(_generate_args(args, out, "--hallo2"), REPO, lambda err: ckpt.is_file(), signal.SIGKILL)
    assert r.returncode == -signal.SIGKILL, "the run ended before a checkpoint was seen: " + r.stderr[-2000:]
    done_clips = torch.load(ckpt, weights_only=True)["next_clip"]
    assert 0 < done_clips < clips

    r = warm.run(_generate_args(args, out, "--hallo2", "--resume"), REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"resuming {out} at clip {done_clips + 1} of {clips}" in r.stderr
    a, rate_a, _, audio_a = _probe(full)
    b, rate_b, _, audio_b = _probe(out)
    assert a.shape[0] == b.shape[0] == clips * 16 and rate_a == rate_b == 25
    assert np.array_equal(a, b)
    assert abs(audio_a - audio_b) < 1e-3 and abs(audio_b - seconds) < 0.05
