"""The Reference node's prepared context, handed to the clip loop the way the samplers do (no ComfyUI needed).

The Reference node calls ``prepare_context`` once and moves it to the intermediate device; the samplers
pass it to ``generate`` on the fast path only (``nodes.sampler.run``). The frames must be exactly those of
a run that prepares everything itself.
"""

from dataclasses import dataclass
from typing import Any

import pytest
import torch

from hallo_core.io.vae import VaeCodec
from hallo_core.media.video import MemorySink
from hallo_core.pipeline.generate import GenerationSettings, generate, prepare_context
from tests.support.tiny_engine import build_tiny_net, build_tiny_vae, random_audio, random_face_data

CLIP = 16  # the nodes use hallo_core's default clip length


@dataclass
class Ref:  # the fields of nodes.common.Reference that the samplers read (common imports ComfyUI)
    face: Any
    context: Any = None


@pytest.fixture(scope="module")
def parts():
    return build_tiny_net(seed=0), VaeCodec(build_tiny_vae(seed=1)), random_face_data(64, seed=2)


def _context_for(ref, settings):
    """What nodes.sampler.run hands to generate."""
    return ref.context if settings.fast else None


def _run(parts, ref, fast=True, face=None, **kw):
    net, vae, f = parts
    settings = GenerationSettings(steps=2, seed=7, fast=fast, **kw)
    sink = MemorySink(torch.float32)
    generate(net, vae, face or ref.face, random_audio(20, CLIP, seed=3), settings, sink,
             context=_context_for(ref, settings))
    return sink.images()


def test_reference_context_is_used_and_gives_the_same_frames(parts):
    net, vae, face = parts
    ctx = prepare_context(net, vae, face).to("cpu")
    assert ctx.frames == CLIP and ctx.ref_banks and ctx.ref_latent.shape[-1] == 64 // vae.scale_factor
    ref = Ref(face, ctx)
    plain = _run(parts, Ref(face))  # no context: hallo_core prepares it itself
    assert plain.shape[0] == 20
    assert torch.equal(_run(parts, ref), plain)
    assert torch.equal(_run(parts, ref, cfg_steps=1), _run(parts, Ref(face), cfg_steps=1))
    # fast=False ignores the Reference context and runs the plain per-clip structure
    assert torch.equal(_run(parts, ref, fast=False), _run(parts, Ref(face), fast=False))


def test_reference_context_from_another_face_or_model_is_an_error(parts):
    net, vae, face = parts
    ref = Ref(face, prepare_context(net, vae, face))
    with pytest.raises(ValueError, match="another face"):
        _run(parts, ref, face=random_face_data(64, seed=9))
    other = (build_tiny_net(seed=4), vae, face)
    with pytest.raises(ValueError, match="another Hallo network"):
        _run(other, ref)
