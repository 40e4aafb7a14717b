"""The CLI answers --help at once (no torch at import), in one option style."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SUBCOMMANDS = ("generate", "batch", "upscale", "convert", "download", "doctor")


def _subparsers():
    from hallo_core.cli.main import _parser

    return next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)).choices


def test_every_subcommand_is_listed():
    assert set(_subparsers()) == set(SUBCOMMANDS)


@pytest.mark.parametrize("cmd", ("",) + SUBCOMMANDS)
def test_help_is_fast_and_imports_no_torch(cmd):
    code = ("import sys, runpy; sys.argv = ['hallo'] + sys.argv[1:]\n"
            "try:\n    runpy.run_module('hallo_core', run_name='__main__')\n"
            "except SystemExit as e:\n    assert e.code == 0, e.code\n"
            "heavy = [m for m in ('torch', 'numpy', 'cv2', 'mediapipe', 'transformers', 'diffusers') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", code, *([cmd] if cmd else []), "--help"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=60)
    elapsed = time.perf_counter() - t0
    assert r.returncode == 0, r.stderr
    assert "usage: hallo" in r.stdout
    assert elapsed < 1.0, f"{cmd} --help took {elapsed:.2f} s"


def test_one_option_style():
    for name, sub in _subparsers().items():
        for action in sub._actions:
            shown = [o for o in action.option_strings if o.startswith("--")]
            if action.help == argparse.SUPPRESS:
                continue  # old spellings kept as hidden aliases
            for opt in shown:
                assert "_" not in opt, f"{name} {opt}: options are spelled with dashes"
    up = _subparsers()["upscale"]
    a = up.parse_args(["-i", "x.mp4", "-o", "y.mp4", "--model_dir", "M", "--fidelity_weight", "0.7", "--bg_tile", "0"])
    assert (a.models, a.fidelity_weight, a.bg_tile) == ("M", 0.7, 0)
    a = up.parse_args(["-i", "x.mp4", "-o", "y.mp4"])
    assert (a.models, a.fidelity_weight, a.bg_tile, a.missing_face) == ("pretrained_models", 0.5, 400, "passthrough")
    assert "--model_dir" not in up.format_help()


def _choices(sub: str, dest: str):
    return next(a.choices for a in _subparsers()[sub]._actions if a.dest == dest)


def test_the_cli_offers_the_engine_tables_themselves():
    """The choices and defaults are the engine's own objects (no copies to keep equal)."""
    from hallo_core.assets import layout as models_dir
    from hallo_core.cli import main as cli
    from hallo_core.face.crop import DEFAULT_MARGIN, DEFAULT_MAX_SIDE
    from hallo_core.face.find import DETECTORS
    from hallo_core.pipeline.full_frame import FRAME_MODES
    from hallo_core.pipeline.scheduler import SCHEDULER_NAMES
    from hallo_core.upscale.video_upscale import SCALES

    assert _choices("generate", "scheduler") is SCHEDULER_NAMES
    assert _choices("generate", "frame") is FRAME_MODES
    assert _choices("upscale", "upscale") is SCALES
    assert _choices("generate", "detector") is DETECTORS
    assert FRAME_MODES == ("auto", "crop", "stretch")
    base = ["--models", "M", "--image", "i", "--audio", "a", "--out", "o"]
    assert _subparsers()["generate"].parse_args(base + ["--frame", "square"]).frame == "crop"  # still parses
    assert "--frame {auto,crop,stretch}" in _subparsers()["generate"].format_help()  # the one vocabulary shown
    g = _subparsers()["generate"].parse_args(["--models", "M", "--image", "i", "--audio", "a", "--out", "o"])
    assert (g.margin, g.max_side, g.frame, g.face) == (DEFAULT_MARGIN, DEFAULT_MAX_SIDE, "auto", -1)
    # every name download accepts is listed in its --help, and nothing else
    assert set(cli.DOWNLOAD_NAMES["components"]) == set(models_dir.COMPONENTS)
    assert set(cli.DOWNLOAD_NAMES["bundles"]) == set(models_dir.BUNDLES)
    text = " ".join(_subparsers()["download"].format_help().split())
    for n in cli.DOWNLOAD_NAMES["components"] + cli.DOWNLOAD_NAMES["bundles"]:
        assert n in text
    for c in cli.OPTIONAL_COMPONENTS:
        assert c in models_dir.COMPONENTS


def test_the_engine_tables_import_without_torch():
    """The modules the CLI reads its tables from, and the packages above them, import no torch
    (their package __init__s re-export lazily)."""
    code = ("import sys\n"
            "import hallo_core.options, hallo_core.cli.main, hallo_core.pipeline, hallo_core.face, hallo_core.audio\n"
            "import hallo_core.models, hallo_core.models.upscaler, hallo_core.upscale\n"
            "from hallo_core.pipeline.full_frame import FRAME_MODES\n"
            "from hallo_core.upscale.windows import SCALES\n"
            "heavy = [m for m in ('torch', 'numpy', 'cv2', 'mediapipe', 'transformers', 'diffusers') if m in sys.modules]\n"
            "assert not heavy, heavy\n"
            "from hallo_core.models import build_hallo_net\n"  # the lazy re-export still works
            "assert 'torch' in sys.modules\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_upscale_options_reach_the_engine_entry_point(monkeypatch, tmp_path):
    """The checked options of the CLI's own parse reach the engine as plain values (no second parser)."""
    from hallo_core.cli import upscale as cli_upscale
    from hallo_core.upscale import file_upscale

    seen = {}
    monkeypatch.setattr(file_upscale, "load_upscaler_models", lambda *a, **k: ("models", a, k))

    def fake_upscale(src, dst, models, scale, w, **kw):
        seen.update(src=src, dst=dst, models=models, scale=scale, w=w, **kw)
        return file_upscale.UpscaleReport()

    monkeypatch.setattr(file_upscale, "upscale_video", fake_upscale)
    a = _subparsers()["upscale"].parse_args(["-i", "a.mp4", "-o", "b.mp4", "-s", "4", "-w", "0.7", "--crf", "24",
                                             "--face", "largest", "--smooth-landmarks", "0.3", "--models", "M"])
    cli_upscale.upscale_checked(a)
    assert (seen["src"], seen["dst"], seen["scale"], seen["w"]) == ("a.mp4", "b.mp4", 4, 0.7)
    assert seen["models"] == ("models", ("M", None, False, 400), {"use_bg_upscaler": True})
    assert (seen["qp"], seen["face_mode"], seen["landmark_smoothing"], seen["paster"]) == (24, "largest", 0.3, None)
    assert _subparsers()["upscale"].parse_args(["-i", "a", "-o", "b"]).qp == 20


def test_offline_download_is_one_error_line(monkeypatch, tmp_path, capsys):
    from hallo_core.assets import download as models_dir
    from hallo_core.cli import main as cli

    def offline(models, which=None, files=None):
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(models_dir, "download", offline)
    assert cli.main(["download", "--models", str(tmp_path), "--which", "vae"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: download failed: no connection to huggingface.co")
    # the repo and its files, where they go, and how to place them by hand
    assert ("https://huggingface.co/fudan-generative-ai/hallo: sd-vae-ft-mse/config.json, "
            "sd-vae-ft-mse/diffusion_pytorch_model.safetensors") in err[0]
    assert f"place each at {tmp_path}/<its path in the repo>" in err[0]
    # an unknown name is the user's mistake too, named with the valid ones (before any network use)
    monkeypatch.undo()
    assert cli.main(["download", "--models", str(tmp_path), "--which", "vea"]) == 2
    assert "unknown component 'vea'" in capsys.readouterr().err


def _image_and_audio(folder: Path):
    """A decodable picture and a second of sound: the checks before the models pass on them."""
    import numpy as np
    import soundfile as sf
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(folder / "x.png")
    sf.write(str(folder / "x.wav"), 0.3 * np.sin(np.arange(16000) / 5.0), 16000)
    return folder / "x.png", folder / "x.wav"


def test_generate_refuses_only_for_required_files(tmp_path, capsys):
    """README and CLI agree: the SD1.5 UNet config and the vocal separator are optional."""
    from hallo_core.cli import main as cli

    image, audio = _image_and_audio(tmp_path)
    assert cli.main(["generate", "--models", str(tmp_path), "--image", str(image), "--audio", str(audio),
                     "--out", str(tmp_path / "o.mp4"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: missing hallo (hallo/net.pth)") and err.count("\n") == 1  # all in one line
    for required in ("vae", "wav2vec", "face_analysis"):
        assert f"{required} (" in err
    assert "unet_config" not in err and "audio_separator" not in err
    readme = (REPO / "README.md").read_text()
    assert "stable-diffusion-v1-5/unet/config.json         # optional" in readme
    assert "audio_separator/Kim_Vocal_2.onnx               # optional" in readme


def test_debug_shows_the_traceback_and_internal_faults_keep_theirs(tmp_path, monkeypatch, capsys):
    from hallo_core.cli import main as cli
    from hallo_core.errors import UserError

    bad = ["generate", "--models", str(tmp_path), "--image", "x.png", "--audio", "x.wav", "--out", "o.mp4",
           "--steps", "-1"]
    assert cli.main(bad) == 2
    assert capsys.readouterr().err.startswith("error: --steps is -1, outside the range it accepts (--steps)")
    for argv in (["--debug"] + bad, bad + ["--debug"]):  # before or after the subcommand
        with pytest.raises(UserError, match="steps is -1"):
            cli.main(argv)

    def broken(a):
        raise RuntimeError("a bug")

    monkeypatch.setitem(cli.COMMANDS, "doctor", broken)
    with pytest.raises(RuntimeError, match="a bug"):  # not a user error: the traceback stays
        cli.main(["doctor"])
