"""The Reference node's prepared context through the pack's engine adapters (no ComfyUI needed).

The Reference node calls ``engine.prepare_context`` once; the samplers hand it to ``engine.generate``
through ``engine.context_for``. The frames must be exactly those of a run that prepares everything itself.
"""

from dataclasses import dataclass
from typing import Any

import pytest
import torch

from hallo_core.io.vae import VaeCodec
from hallo_core.io.video import MemorySink
from nodes import engine
from tests.support.tiny_engine import build_tiny_net, build_tiny_vae, random_audio, random_face_data

CLIP = 16  # the node adapters use hallo_core's default clip length


@dataclass
class Ref:  # the fields of nodes.common.Reference that the samplers read (common imports ComfyUI)
    face: Any
    context: Any = None


@pytest.fixture(scope="module")
def parts():
    torch.set_num_threads(2)
    return build_tiny_net(seed=0), VaeCodec(build_tiny_vae(seed=1)), random_face_data(64, seed=2)


def _run(parts, ref, fast=True, face=None, **kw):
    net, vae, f = parts
    settings = engine.generation_settings(steps=2, seed=7, fast=fast, **kw)
    sink = MemorySink(torch.float32)
    engine.generate(net, vae, face or ref.face, random_audio(20, CLIP, seed=3), settings, sink,
                    context=engine.context_for(ref, settings.fast))
    return sink.images()


def test_reference_context_is_used_and_gives_the_same_frames(parts):
    net, vae, face = parts
    ctx = engine.prepare_context(net, vae, face, device="cpu")
    assert ctx.frames == CLIP and ctx.ref_banks and ctx.ref_latent.shape[-1] == 64 // vae.scale_factor
    ref = Ref(face, ctx)
    assert engine.context_for(ref, True) is ctx and engine.context_for(ref, False) is None
    plain = _run(parts, Ref(face))  # no context: hallo_core prepares it itself
    assert plain.shape[0] == 20
    assert torch.equal(_run(parts, ref), plain)
    assert torch.equal(_run(parts, ref, cfg_steps=1), _run(parts, Ref(face), cfg_steps=1))
    # fast=False ignores the Reference context and runs the plain per-clip structure
    assert torch.equal(_run(parts, ref, fast=False), _run(parts, Ref(face), fast=False))


def test_reference_context_from_another_face_or_model_is_an_error(parts):
    net, vae, face = parts
    ref = Ref(face, engine.prepare_context(net, vae, face))
    with pytest.raises(ValueError, match="another face"):
        _run(parts, ref, face=random_face_data(64, seed=9))
    other = (build_tiny_net(seed=4), vae, face)
    with pytest.raises(ValueError, match="another Hallo network"):
        _run(other, ref)
