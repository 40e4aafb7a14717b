"""Where the engine lets its host place models, and the memory it tells the host to keep free
(no ComfyUI needed; tests/test_nodes_memory.py runs the same through ComfyUI's model management).

- Every reference-UNet pass goes through the network's ``placement`` with its latent batch shape and
  the low_vram flag; a host placement replaces hallo_core's own moves entirely, with the same frames.
- The motion modules' position table is copied to the compute device once, not on every call.
- The memory estimates are ComfyUI's formula (comfy/sampler_helpers.py -> BaseModel.memory_required).
"""

from __future__ import annotations

import contextlib

import pytest
import torch

from hallo_core.io.vae import VaeCodec
from hallo_core.media.video import MemorySink
from hallo_core.pipeline import memory as M
from hallo_core.pipeline.generate import GenerationSettings, generate, prepare_context
from hallo_core.pipeline.reference_cache import OwnPlacement, placement_of
from tests.support.tiny_engine import build_tiny_net, build_tiny_vae, random_audio, random_face_data

MIB = 1024 * 1024


def test_memory_formula_is_comfyuis():
    # without a memory-efficient kernel: 0.15 MiB per latent element of the batch (SD1.5 factor 1)
    assert M.unet_memory([32, 4, 64, 64], torch.float16, False) == int(32 * 64 * 64 * 0.15 * MIB)
    # with one: bytes per element x 0.01 MiB
    assert M.unet_memory([32, 4, 64, 64], torch.float16, True) == int(32 * 64 * 64 * 2 * 0.01 * MIB)
    assert M.unet_memory([32, 4, 64, 64], torch.float32, True) == int(32 * 64 * 64 * 4 * 0.01 * MIB)
    # a 5-D video latent [B, C, T, H, W] counts like its frames in the batch, as core's video models
    assert M.unet_memory([2, 4, 16, 64, 64], torch.float16, True) == M.unet_memory([32, 4, 64, 64], torch.float16, True)
    # a 512 px clip of 16 frames with CFG: 2 x 16 latents of 64 x 64
    d = M.denoise_memory(512, 16, True, torch.float16, True)
    assert d == M.unet_memory([32, 4, 64, 64], torch.float16, True) and d > 2.5 * 2**30
    assert abs(M.denoise_memory(512, 16, False, torch.float16, True) * 2 - d) <= 1
    assert M.reference_memory(512, 6, torch.float16, True) == M.unet_memory([6, 4, 64, 64], torch.float16, True)
    # core's SD-VAE figures (comfy/sd.py), per image
    assert M.vae_decode_memory(512, 1, torch.float32) == 2178 * 64 * 64 * 64 * 4
    assert M.vae_encode_memory(512, 1, torch.float32) == 1767 * 512 * 512 * 4
    for v in (d, M.reference_memory(64, 2, torch.float32, False), M.vae_decode_memory(64, 1, torch.float16)):
        assert v > 0


class Recording:
    """A host placement that records every reference pass (and moves nothing: all on the CPU)."""

    def __init__(self):
        self.calls = []

    @contextlib.contextmanager
    def reference_pass(self, net, device, low_vram, shape=None):
        self.calls.append((str(device), bool(low_vram), tuple(shape)))
        yield


@pytest.fixture(scope="module")
def parts():
    return build_tiny_net(seed=0), VaeCodec(build_tiny_vae(seed=1)), random_face_data(64, seed=2)


def _run(net, vae, face, **kw):
    sink = MemorySink(torch.float32)
    st = GenerationSettings(steps=2, seed=7, **kw)
    generate(net, vae, face, random_audio(20, 16, seed=3), st, sink, context=prepare_context(net, vae, face, st))
    return sink.images()


def test_host_placement_sees_every_reference_pass_with_its_shape(parts, monkeypatch):
    net, vae, face = parts
    assert isinstance(placement_of(net), OwnPlacement)
    moves = []
    real_to = torch.nn.Module.to
    monkeypatch.setattr(torch.nn.Module, "to", lambda self, *a, **k: moves.append(type(self).__name__) or real_to(self, *a, **k))
    own = _run(net, vae, face, low_vram=True)
    # hallo_core's own placement: low_vram moves the reference UNet in and out around each pass
    # (the portrait's pass and clip 2's motion pass)
    assert moves.count("ReferenceUNet") == 4, moves
    moves.clear()
    rec = Recording()
    net.placement = rec
    try:
        hosted = _run(net, vae, face, low_vram=True)
        plain = _run(net, vae, face, low_vram=False)
    finally:
        net.placement = None
    assert moves == []  # the host's placement replaces every move
    assert torch.equal(hosted, own) and torch.equal(plain, own)
    # per run: the portrait's banks (R.u, R.c), then clip 2's motion items (4 with CFG; clip 1 reuses
    # the portrait's banks), each at the 8 x 8 latent of 64 px
    assert rec.calls == [("cpu", True, (2, 4, 8, 8)), ("cpu", True, (4, 4, 8, 8)),
                         ("cpu", False, (2, 4, 8, 8)), ("cpu", False, (4, 4, 8, 8))], rec.calls
    rec.calls.clear()
    net.placement = rec
    try:
        _run(net, vae, face, fast=False, cfg_steps=0)  # the plain path: one [R, M1, M2] x 2 pass per clip
    finally:
        net.placement = None
    assert rec.calls == [("cpu", False, (6, 4, 8, 8))] * 2, rec.calls


def test_position_table_is_made_once_per_device_and_dtype():
    from hallo_core.models.transformers import PositionalEncoding

    pe = PositionalEncoding(8, 24, dtype=torch.float16)
    a = pe.table(16, torch.device("cpu"), torch.float32)
    b = pe.table(12, torch.device("cpu"), torch.float32)
    assert a.dtype == torch.float32 and b.shape == (1, 12, 8)
    assert a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()  # one copy, reused
    assert torch.equal(a, pe.pe[:, :16].float())
    with torch.no_grad():
        pe.pe.mul_(2)  # the buffer changed (a checkpoint load): the copy follows it
    assert torch.equal(pe.table(16, torch.device("cpu"), torch.float32), pe.pe[:, :16].float())
    same = pe.table(4, torch.device("cpu"), torch.float16)  # the buffer's own device and dtype
    assert same.data_ptr() == pe.pe.data_ptr() and pe._copy is None
