"""The bad inputs of issue 25 through the CLI: each ends with one ``error:`` line and exit 2, or is
accepted where it is a legitimate input.

- a VAE folder of another architecture, a wav2vec2 folder without config.json: named before any
  weights are read (not a diffusers traceback, not "shape mismatches");
- a photo with NaN pixels: refused as such (not "no face found"); a 16-bit greyscale portrait:
  scaled to 8 bits and animated (not "almost blank");
- no torch installed: ``python -m hallo_core generate`` prints one line (the error printer
  imports nothing heavy);
- the disk fills while the resume checkpoint is written: one line, the finished clips stay,
  no ``.resume.pt.tmp`` is left;
- ``--out talk.gif``: refused (tests/test_bad_inputs.py, row out-gif, runs through the CLI too);
- a RealESRGAN file: read with or without the ``params_ema``/``params`` wrapper; under any other
  key, refused by ``upscale`` before any weights are read.

Rows run in the warm CLI runner of tests/test_bad_inputs_cli.py (its fixtures and checks).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.support.models_mirror import replace
from tests.test_bad_inputs_cli import (REPO, _env, _needs_faces, _video, base, gen_argv, job, one_error_line,  # noqa: F401
                                       run_bad)


def _vae_of_another_architecture(job):
    cfg_path = job["models"] / "sd-vae-ft-mse" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    replace(cfg_path, json.dumps({**cfg, "norm_num_groups": 32, "block_out_channels": [8, 16]}).encode())


def _nan_image(job):
    from PIL import Image

    grey = np.asarray(Image.open(job["image"]).convert("L"), np.float32) / 255
    grey[40:60, 40:60] = np.nan
    job["image"] = job["dir"] / "inputs" / "nan.tif"
    Image.fromarray(grey, mode="F").save(job["image"])


ROWS = [
    ("vae-of-another-architecture", _vae_of_another_architecture,
     "is not the config of Stable Diffusion's VAE (AutoencoderKL): its block widths [8, 16] do not split into 32 "
     "groups (--models)"),
    ("wav2vec-without-config-json", lambda j: (j["models"] / "wav2vec" / "wav2vec2-base-960h" / "config.json").unlink(),
     "has no config.json (--models)"),
    ("image-with-nan-pixels", _nan_image, "holds NaN or infinite pixel values (--image)"),
]


@pytest.mark.parametrize("name,setup,needle", ROWS, ids=[r[0] for r in ROWS])
def test_bad_input_rows(name, setup, needle, job):
    setup(job)
    _, line = run_bad(job, gen_argv(job), needle)
    assert "mismatch" not in line and "no face" not in line


def test_without_torch_generate_prints_one_line(job, tmp_path):
    """A Python without torch (an import of it fails as Python's does for a missing module)."""
    fake = tmp_path / "no_torch"
    fake.mkdir()
    (fake / "torch.py").write_text('raise ModuleNotFoundError("No module named \'torch\'", name="torch")\n')
    env = dict(_env(), PYTHONPATH=f"{fake}{os.pathsep}{REPO}")
    r = subprocess.run([sys.executable, "-m", "hallo_core", *gen_argv(job)], cwd=job["dir"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr[-3000:]
    line = one_error_line(r.stderr, "error: torch cannot be imported (No module named 'torch') (install): install "
                                    "PyTorch first")
    assert r.stderr.strip() == line  # nothing else: no traceback, no chained one
    r = subprocess.run([sys.executable, "-m", "hallo_core", "generate", "--help"], cwd=job["dir"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "usage: hallo generate" in r.stdout  # --help needs no torch


def test_a_full_disk_while_the_resume_checkpoint_is_written_is_one_line(job):
    _needs_faces(job)
    out = Path(job["out"])
    r = job["base"]["warm"].run(gen_argv(job), cwd=job["dir"], setup=["tests.support.faults:disk_full_at_resume_checkpoint"])
    assert r.returncode == 2, r.stderr[-3000:]
    one_error_line(r.stderr, f"the resume checkpoint {out}.resume.pt cannot be written (No space left on device) "
                             "(--out): free disk space")
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # no .resume.pt.tmp, no checkpoint
    import av

    with av.open(str(out)) as c:  # the finished clips are kept and play
        assert sum(1 for _ in c.decode(c.streams.video[0])) in (16, 20)


def test_a_16_bit_greyscale_portrait_is_animated(job):
    """Its levels are scaled to 8 bits (not clipped to white): the face is found and the run starts."""
    _needs_faces(job)
    from PIL import Image

    grey = np.asarray(Image.open(job["image"]).convert("L")).astype(np.uint16) * 257
    job["image"] = job["dir"] / "inputs" / "grey16.png"
    Image.fromarray(grey).save(job["image"])
    assert Image.open(job["image"]).mode.startswith("I")
    warm = job["base"]["warm"]
    pid = warm.start(gen_argv(job), cwd=job["dir"])
    warm.wait_for("face: ")  # every check passed, the face included; the weights load now
    os.kill(pid, signal.SIGINT)
    r = warm.wait()
    assert r.returncode == 130, r.stderr[-3000:]
    assert "error:" not in r.stderr and "face: 1 face found" in r.stderr


# -- upscale: the RealESRGAN file with or without upstream's wrapper -----------------------------

def _upscaler_files(root: Path, realesrgan: dict) -> Path:
    """The hallo2-4k files as small torch archives (the up-front check reads their key lists only)."""
    t = torch.zeros(2)
    for rel, obj in (("hallo2/net_g.pth", {"params_ema": {"quantize.embedding.weight": t}}),
                     ("facelib/detection_Resnet50_Final.pth", {"body.conv1.weight": t}),
                     ("facelib/parsing_parsenet.pth", {"encoder.0.weight": t}),
                     ("realesrgan/RealESRGAN_x2plus.pth", realesrgan)):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        torch.save(obj, root / rel)
    return root


@pytest.mark.parametrize("wrapper,needle,stage", [
    ("model", "RealESRGAN_x2plus.pth holds its tensors under model, not under params_ema or params or at the top "
              "level (--models)", "before"),
    # accepted as it is: the run goes on to load the networks, and the (tiny) net_g is the next bad file
    ("", "net_g.pth: does not match TemporalCodeFormer", "after"),
    ("params", "net_g.pth: does not match TemporalCodeFormer", "after"),
])
def test_upscale_reads_realesrgan_with_or_without_its_wrapper(wrapper, needle, stage, job):
    sd = {"conv_first.weight": torch.zeros(4, 3, 3, 3), "conv_last.bias": torch.zeros(3)}
    job["models"] = _upscaler_files(job["dir"] / "upscaler_models", {wrapper: sd} if wrapper else sd)
    job["video"] = _video(job["dir"] / "inputs" / "clip.mp4")
    args = ["upscale", "-i", str(job["video"]), "-o", str(job["out"]), "--models", str(job["models"]),
            "--device", "cpu"]
    run_bad(job, args, needle, stage=stage, watched=[job["video"]])
