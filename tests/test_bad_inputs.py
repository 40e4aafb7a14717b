"""A table of bad ``generate`` inputs, one per row, over every class of the user-error issue.

Today every row runs through :func:`hallo_core.cli.preflight.preflight_generate`, the call the CLI
makes first. Each row asserts: a UserError whose text is one line and holds the expected words,
no input file changed (hashes before and after), no output file left, and no weights read (the
``HALLO_TRACE_LOADS`` log stays empty). ``argv`` gives each row's command line, so the same
table drives the CLI as a subprocess once the CLI calls the preflight (exit code 2,
``error: ...`` on one line, no "Traceback").
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple, Optional

import numpy as np
import pytest
import soundfile as sf
import torch

from hallo_core.cli.common import words
from hallo_core.errors import UserError
from hallo_core.io.checkpoints import TRACE_ENV
from hallo_core.cli.preflight import preflight_generate
from tests.support.models_mirror import mirror, replace, shared_tiny_models

OPTIONS = {"steps": 2, "cfg": 3.5, "seed": 42, "pose_weight": 1.0, "face_weight": 1.0, "lip_weight": 1.0,
           "size": 64, "mask_rate": 0.25, "cfg_steps": None}


class Case(NamedTuple):
    id: str
    klass: str  # output | image | audio | models | options | device
    setup: Callable[[dict], None]  # changes the job dict in place (and may write bad files)
    needle: str  # words the one-line message must contain


def _set(**kw):
    def f(job):
        for k, v in kw.items():
            if k in OPTIONS:
                job["options"][k] = v
            else:
                job[k] = v
    return f


def _out_is(key):
    def f(job):
        job["out"] = job[key]
    return f


def _out_link(kind):
    def f(job):
        link = job["dir"] / f"out_{kind}.mp4"
        (os.symlink if kind == "symlink" else os.link)(job["audio"], link)
        job["out"] = link
    return f


def _out_dotdot(job):
    job["out"] = job["image"].parent / ".." / job["image"].parent.name / job["image"].name


def _file(key, name, data: Optional[bytes] = None, make: Optional[Callable[[Path], None]] = None):
    def f(job):
        p = job["dir"] / name
        if make is not None:
            make(p)
        else:
            p.write_bytes(data)
        job[key] = p
    return f


def _wav(wave, sr=16000, subtype="FLOAT"):
    return lambda p: sf.write(str(p), np.asarray(wave, np.float32).T, sr, subtype=subtype)


def _nan_wave():
    w = np.sin(np.linspace(0, 300, 32000, dtype=np.float32))[None] * 0.3
    w[0, 20000] = np.nan
    return w


def _inf_wave():
    w = np.sin(np.linspace(0, 300, 32000, dtype=np.float32))[None] * 0.3
    w[0, 123] = -np.inf
    return w


def _tiny_png(p):
    from PIL import Image

    Image.new("RGB", (4, 4)).save(p)


def _model(rel, change: Callable[[Path], bytes]):
    """Replace one file of the job's linked models folder with ``change(original)``'s bytes."""
    def f(job):
        p = job["models"] / rel
        replace(p, change(p))
    return f


def _saved(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _drop_key(p):
    sd = torch.load(p, weights_only=True)
    return _saved({k: v for k, v in list(sd.items())[1:]})


def _bad_shape(p):
    sd = torch.load(p, weights_only=True)
    k = next(iter(sd))
    sd[k] = torch.zeros(3)
    return _saved(sd)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned_by_bad_inputs_test",))


def _remove(rel):
    def f(job):
        import shutil

        p = job["models"] / rel
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    return f


CASES: List[Case] = [
    # nothing of the user's is overwritten
    Case("out-is-image", "output", _out_is("image"), "is the --image file"),
    Case("out-is-audio", "output", _out_is("audio"), "is the --audio file"),
    Case("out-symlink-to-audio", "output", _out_link("symlink"), "is the --audio file"),
    Case("out-hardlink-to-audio", "output", _out_link("hardlink"), "is the --audio file"),
    Case("out-dotdot-image", "output", _out_dotdot, "is the --image file"),
    Case("out-is-net-pth", "output", lambda j: j.update(out=j["models"] / "hallo" / "net.pth"),
         "would overwrite a file of the --models folder"),
    Case("out-is-folder", "output", lambda j: j.update(out=j["dir"]), "is a folder"),
    Case("out-trailing-slash", "output", lambda j: j.update(out=str(j["dir"] / "new") + os.sep), "is a folder"),
    Case("out-parent-is-file", "output", lambda j: j.update(out=j["image"] / "x.mp4"), "is a file, so the folder"),
    Case("out-is-models-folder", "output", lambda j: j.update(out=j["models"]), "is a folder"),
    Case("out-gif", "output", lambda j: j.update(out=j["dir"] / "talk.gif"), "has .gif, but the file written is an MP4"),
    Case("out-avi", "output", lambda j: j.update(out=j["dir"] / "video.avi"), "name it video.mp4"),
    # the image
    Case("image-missing", "image", _set(image=Path("/nonexistent/face.png")), "does not exist"),
    Case("image-garbage", "image", _file("image", "junk.png", b"\x89PNG not really"), "cannot be decoded"),
    Case("image-truncated", "image", lambda j: _file("image", "cut.jpg", j["image"].read_bytes()[:2000])(j),
         "cannot be decoded"),
    Case("image-is-folder", "image", lambda j: j.update(image=j["dir"]), "is a folder, not a image"),
    Case("image-4px", "image", _file("image", "tiny.png", make=_tiny_png), "too small for a portrait"),
    Case("image-is-audio", "image", lambda j: j.update(image=j["audio"]), "cannot be decoded"),
    # the audio
    Case("audio-missing", "audio", _set(audio=Path("/nonexistent/speech.wav")), "does not exist"),
    Case("audio-garbage-mp3", "audio", _file("audio", "junk.mp3", b"\x00" * 300), "cannot be decoded"),
    Case("audio-nan", "audio", _file("audio", "nan.wav", make=_wav(_nan_wave())), "NaN or infinite samples"),
    Case("audio-inf", "audio", _file("audio", "inf.wav", make=_wav(_inf_wave())), "NaN or infinite samples"),
    Case("audio-too-short", "audio", _file("audio", "short.wav", make=_wav(np.ones((1, 100)) * 0.1)),
         "shorter than one video frame"),
    Case("audio-empty", "audio", _file("audio", "empty.wav", make=_wav(np.zeros((1, 0)))),
         "audio"),
    Case("audio-is-image", "audio", lambda j: j.update(audio=j["image"]), "cannot be decoded"),
    # model files (checked by key lists, never loaded)
    Case("net-truncated", "models", _model("hallo/net.pth", lambda p: p.read_bytes()[:4096]), "truncated or corrupt"),
    Case("net-missing-key", "models", _model("hallo/net.pth", _drop_key), "1 missing keys"),
    Case("net-wrong-shape", "models", _model("hallo/net.pth", _bad_shape), "shape mismatches"),
    Case("net-unsafe-pickle", "models", _model("hallo/net.pth", lambda p: _saved({"x": _Evil()})), "was refused"),
    Case("net-empty", "models", _model("hallo/net.pth", lambda p: b""), "the file is empty"),
    Case("net-missing", "models", _remove("hallo/net.pth"), "missing hallo"),
    Case("vae-truncated", "models",
         _model("sd-vae-ft-mse/diffusion_pytorch_model.safetensors", lambda p: p.read_bytes()[:-100]),
         "truncated or corrupt"),
    Case("wav2vec-missing", "models", _remove("wav2vec"), "missing wav2vec"),
    Case("scrfd-truncated", "models",
         _model("face_analysis/models/scrfd_10g_bnkps.onnx", lambda p: p.read_bytes()[:100]), "scrfd_10g_bnkps"),
    Case("unet-config-bad-json", "models", _model("stable-diffusion-v1-5/unet/config.json", lambda p: b"{oops"),
         "UNet config"),
    Case("models-folder-missing", "models", _set(models=Path("/nonexistent/models")), "does not exist"),
    # options
    Case("steps-negative", "options", _set(steps=-1), "--steps is -1"),
    Case("steps-zero", "options", _set(steps=0), "--steps is 0"),
    Case("cfg-nan", "options", _set(cfg=float("nan")), "--cfg is nan, not a finite number"),
    Case("pose-weight-inf", "options", _set(pose_weight=float("inf")), "--pose-weight is inf"),
    Case("size-not-64", "options", _set(size=100), "--size is 100"),
    Case("mask-rate-2", "options", _set(mask_rate=2.0), "--mask-rate is 2"),
    Case("seed-negative", "options", _set(seed=-5), "--seed is -5"),
    Case("cfg-steps-over-steps", "options", _set(cfg_steps=9), "more than the 2 steps"),
    # device
    Case("device-banana", "device", _set(device="banana"), "not a device name"),
    Case("device-missing-gpu", "device", _set(device="cuda:7"), "cuda:7"),
]


def argv(job: dict) -> List[str]:
    """The ``python -m hallo_core`` arguments of a job (for the subprocess form of this table)."""
    a = ["generate", "--models", str(job["models"]), "--image", str(job["image"]), "--audio", str(job["audio"]),
         "--out", str(job["out"]), "--device", str(job["device"])]
    for k, v in job["options"].items():
        if v is not None:
            a += ["--" + k.replace("_", "-"), str(v)]
    return a


def _digest(p: Path) -> Optional[str]:
    p = Path(p)
    if not p.is_file():
        return None
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _tree_digest(root: Path) -> Dict[str, object]:
    """Content hash of every regular file; a link (to the shared tiny models) by its target and the
    target's size and mtime, since hashing 460 MB per row would dominate the table's run time."""
    out: Dict[str, object] = {}
    for d, _, fs in os.walk(root) if Path(root).is_dir() else ():
        for f in fs:
            p = Path(d) / f
            if p.is_symlink():
                st = p.stat()
                out[str(p)] = (os.readlink(p), st.st_size, st.st_mtime_ns)
            else:
                out[str(p)] = _digest(p)
    return out


@pytest.fixture
def job(tmp_path, fixtures_dir):
    models = mirror(shared_tiny_models(), tmp_path / "models")
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    image = inputs / "portrait.jpg"
    image.write_bytes((fixtures_dir / "portrait_5.jpg").read_bytes())
    wave, sr = sf.read(str(fixtures_dir / "speech_1.wav"), dtype="float32")
    audio = inputs / "speech.wav"
    sf.write(str(audio), wave[: int(0.8 * sr)], sr)
    return {"models": models, "image": image, "audio": audio, "out": tmp_path / "out" / "video.mp4",
            "device": "cpu", "options": dict(OPTIONS), "dir": tmp_path}


def _run(job: dict):
    return preflight_generate(job["models"], job["image"], job["audio"], job["out"], job["options"],
                              device=job["device"])


def test_the_table_covers_every_class():
    classes = {c.klass for c in CASES}
    assert classes == {"output", "image", "audio", "models", "options", "device"}
    assert len(CASES) >= 30 and len({c.id for c in CASES}) == len(CASES)


def test_good_job_passes(job, tmp_path, monkeypatch):
    log = tmp_path / "trace.log"
    monkeypatch.setenv(TRACE_ENV, str(log))
    pf = _run(job)
    assert pf.warnings == [] and pf.audio.frames == 20
    assert not log.exists() and not Path(job["out"]).exists()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_clear_line_before_any_weights(case, job, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    log = tmp_path / "trace.log"
    monkeypatch.setenv(TRACE_ENV, str(log))
    case.setup(job)
    watched = [job["image"], job["audio"]] + ([job["out"]] if Path(job["out"]).is_file() else [])
    before = {str(p): _digest(p) for p in watched}
    models_before = _tree_digest(job["models"])
    with pytest.raises(UserError) as e:
        _run(job)
    msg = str(e.value.placed(words))  # as the CLI prints it
    assert case.needle in msg, msg
    assert "\n" not in msg and "Traceback" not in msg and len(msg) < 700
    assert {str(p): _digest(p) for p in watched} == before  # no input changed
    assert _tree_digest(job["models"]) == models_before
    assert not (tmp_path / "out").exists()  # no partial output
    assert not log.exists()  # failed before any weights were read
    assert not (tmp_path / "pwned_by_bad_inputs_test").exists()
    assert argv(job)[0] == "generate"


@pytest.mark.parametrize("name,setup,needle", [
    ("silence", _file("audio", "zero.wav", make=_wav(np.zeros((2, 32000)), subtype="PCM_16")), "the face will not move"),
    ("opposite-phase", _file("audio", "phase.wav", make=_wav(np.stack([np.sin(np.arange(32000) / 7.0),
                                                                      -np.sin(np.arange(32000) / 7.0)]) * 0.3)),
     "loudest channel drives the face"),
])
def test_doubtful_input_is_a_warning_not_an_error(name, setup, needle, job):
    setup(job)
    pf = _run(job)
    assert len(pf.warnings) == 1 and needle in pf.warnings[0] and "\n" not in pf.warnings[0]
