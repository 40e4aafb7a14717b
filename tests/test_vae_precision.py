"""One VAE precision policy for the CLI and the nodes (hallo_core.io.vae): fp32 unless a lower
precision is chosen, and a chunk that overflows in a lower precision is recomputed in fp32.

The VAE here overflows float16 (tests/support/overflow_vae.py: activations past 65504, finite
weights). The ComfyUI node path is checked by tests/test_nodes_memory.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from hallo_core.io.vae import VaeCodec, load_vae, vae_dtype
from tests.support.overflow_vae import build_overflow_vae, write_overflow_vae

REPO = Path(__file__).resolve().parents[1]


def test_policy_dtypes():
    assert vae_dtype() is torch.float32 and vae_dtype("auto") is torch.float32
    assert vae_dtype("fp16") is torch.float16 and vae_dtype("bf16") is torch.bfloat16
    assert vae_dtype(torch.float16) is torch.float16
    with pytest.raises(ValueError, match="VAE precision"):
        vae_dtype("fp8")


@pytest.fixture(scope="module")
def vaes():
    return build_overflow_vae(), build_overflow_vae(dtype=torch.float16)


def test_the_test_vae_overflows_float16(vaes):
    _, v16 = vaes
    assert all(bool(torch.isfinite(p).all()) for p in v16.parameters())  # the weights fit float16...
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    z = torch.randn(2, 4, 8, 8)
    with torch.no_grad():  # ...their activations do not
        assert not torch.isfinite(v16.encode(x.half()).latent_dist.mean).all()
        assert not torch.isfinite(v16.decode(z.half()).sample).all()


def test_fp16_codec_upcasts_overflowing_chunks(vaes):
    v32, v16 = vaes
    ref, low = VaeCodec(v32), VaeCodec(v16, decode_chunk=1)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    z = torch.randn(3, 4, 8, 8)
    a, b = ref.encode(x), low.encode(x)
    assert b.dtype == torch.float16 and torch.isfinite(b).all()
    assert float((a - b.float()).abs().max() / a.abs().max()) < 5e-3
    da, db = ref.decode(z), low.decode(z)
    assert torch.isfinite(db).all() and float(da.std()) > 0.05  # a picture, not a constant
    assert float((da - db.float()).abs().max()) < 5e-3
    # the module itself is left as its owner placed it: still float16, same weights
    assert next(v16.parameters()).dtype == torch.float16
    assert torch.equal(v16.decoder.conv_in.weight, build_overflow_vae(dtype=torch.float16).decoder.conv_in.weight)


def test_load_vae_follows_the_policy(tmp_path):
    folder = write_overflow_vae(tmp_path / "sd-vae-ft-mse")
    assert next(load_vae(folder, dtype=vae_dtype()).parameters()).dtype == torch.float32


# --- the CLI path: `generate --dtype fp16` with this VAE (the network in fp16, the VAE by the policy)

FIXTURES = Path(os.environ.get("HALLO_SHARED", REPO.parent / "shared")) / "fixtures"


def _cli(models, image, wav, out, dtype):
    """The CLI's own entry point, in this process (the cold start is test_cli_e2e's)."""
    from hallo_core.cli.main import main

    args = ["generate", "--models", str(models), "--image", str(image), "--audio", str(wav), "--out", str(out),
            "--size", "64", "--steps", "2", "--device", "cpu", "--dtype", dtype, "--no-separator"]
    assert main(args) == 0
    import av

    with av.open(str(out)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]).astype(np.float32)


def test_cli_fp16_run_decodes_an_overflowing_vae(tmp_path):
    import shutil

    import soundfile as sf

    from tests.landmarks_env import offline_landmarks_skip_reason, write_tasks_bundle
    from tests.support.models_mirror import tiny_models

    if not FIXTURES.is_dir():
        pytest.skip(f"real fixtures not found at {FIXTURES} (../shared is absent)")
    models = tiny_models(tmp_path / "models")
    shutil.rmtree(models / "sd-vae-ft-mse")
    write_overflow_vae(models / "sd-vae-ft-mse")
    if offline_landmarks_skip_reason():
        from hallo_core.face.landmarks import TASK_FILENAME

        if not write_tasks_bundle(models / "face_analysis" / "models" / TASK_FILENAME):
            pytest.skip(offline_landmarks_skip_reason())
    wave, sr = sf.read(str(FIXTURES / "speech_1.wav"), dtype="float32")
    wav = tmp_path / "short.wav"
    sf.write(str(wav), wave[: int(0.4 * sr)], sr)  # 10 frames: one clip
    image = FIXTURES / "portrait_5.jpg"
    half = _cli(models, image, wav, tmp_path / "fp16.mp4", "fp16")
    full = _cli(models, image, wav, tmp_path / "fp32.mp4", "fp32")
    assert half.shape == full.shape and half.shape[0] == 10
    # an fp16 VAE would turn these frames into NaN, written as black (~120 of 255 from the fp32 run's
    # frames); the policy decodes in fp32, so every frame is a picture. What separates it from the
    # fp32 run is the network's own fp16 rounding, which this random tiny network amplifies
    # (measured: 7.0 of 255 mean absolute difference)
    assert all(float(f.std()) > 5.0 for f in half)
    assert float(np.abs(half - full).mean()) < 16.0, float(np.abs(half - full).mean())
