"""ComfyUI's core VAE (Load VAE) through the pack's codec gives upstream Hallo's latents and frames.

Core ``VAE.encode`` returns the *unscaled* posterior mode (= mean) of IMAGE-layout 0..1 pixels and
``decode`` returns IMAGE-layout 0..1; upstream encodes with ``latent_dist.mean * 0.18215`` and decodes
``latents / 0.18215``. Compared against hallo_core's diffusers codec on identical random SD-VAE weights.
Runs in ComfyUI's Python (COMFYUI_PYTHON) because it imports ``comfy``; skipped without COMFYUI_PATH.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

COMFYUI_PATH = os.environ.get("COMFYUI_PATH")
REPO = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import importlib.util, json, os, sys
    sys.path.insert(0, os.environ["COMFYUI_PATH"]); sys.path.insert(0, os.environ["REPO"])
    from comfy.cli_args import args
    args.cpu = True
    import torch
    torch.set_num_threads(2)
    import comfy.sd
    from diffusers import AutoencoderKL
    from hallo_core.io.vae import VaeCodec
    spec = importlib.util.spec_from_file_location("pack_comfy_vae", os.path.join(os.environ["REPO"], "nodes", "comfy_vae.py"))
    eng = importlib.util.module_from_spec(spec); spec.loader.exec_module(eng)
    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4,
                        norm_num_groups=32, sample_size=512).eval()
    core = comfy.sd.VAE(sd={k: v.clone() for k, v in vae.state_dict().items()})
    ours, theirs = VaeCodec(vae), eng.ComfyVaeCodec(core)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    z = torch.randn(2, 4, 8, 8)
    rel = lambda p, q: float((p - q).norm() / q.norm())
    a, b = ours.encode(x), theirs.encode(x)
    da, db = ours.decode(z), theirs.decode(z)
    unscaled = core.encode(((x + 1) / 2).permute(0, 2, 3, 1))
    print(json.dumps({"encode": rel(b, a), "decode": rel(db, da), "shapes": [list(b.shape), list(db.shape)],
                      "unscaled_vs_scaled": rel(unscaled * 0.18215, a), "range": [float(db.min()), float(db.max())]}))
""")


@pytest.mark.skipif(not COMFYUI_PATH, reason="COMFYUI_PATH is not set (needs ComfyUI's comfy package)")
def test_core_vae_codec_matches_upstream_scaling():
    env = dict(os.environ, REPO=str(REPO))
    out = subprocess.run([os.environ.get("COMFYUI_PYTHON", sys.executable), "-c", SCRIPT], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["shapes"] == [[2, 4, 8, 8], [2, 3, 64, 64]]
    assert r["encode"] < 1e-4 and r["decode"] < 1e-4, r
    assert r["unscaled_vs_scaled"] < 1e-4, r  # core encode is the mean, without the 0.18215 factor
    assert 0.0 <= r["range"][0] and r["range"][1] <= 1.0
