"""The compute device and dtype come from the settings when given, else from the weights."""

import torch

from hallo_core.io.vae import VaeCodec
from hallo_core.io.video import MemorySink
from hallo_core.pipeline.generate import GenerationSettings, generate
from hallo_core.pipeline.sampler import model_device, model_dtype
from tests.support.tiny_engine import build_tiny_net, build_tiny_vae, random_audio, random_face_data


def test_settings_device_and_dtype_win_over_the_weights():
    net = build_tiny_net(seed=0)
    assert model_device(net) == torch.device("cpu") and model_dtype(net) == torch.float32
    st = GenerationSettings(device="meta", dtype=torch.float16)
    assert model_device(net, st) == torch.device("meta") and model_dtype(net, st) == torch.float16


def test_explicit_device_and_dtype_give_the_same_frames():
    torch.set_num_threads(2)
    net, vae, face = build_tiny_net(seed=0), VaeCodec(build_tiny_vae(seed=1)), random_face_data(64, seed=2)
    audio = random_audio(4, 4, seed=3)
    outs = []
    for extra in (dict(), dict(device="cpu", dtype=torch.float32)):
        sink = MemorySink(torch.float32)
        generate(net, vae, face, audio, GenerationSettings(steps=2, clip_frames=4, **extra), sink=sink)
        outs.append(sink.images())
    assert torch.equal(outs[0], outs[1])


def test_explicit_device_is_used_for_compute():
    # weights claim "meta" nowhere; asking for meta compute must reach the network (and fail there)
    net, vae, face = build_tiny_net(seed=0), VaeCodec(build_tiny_vae(seed=1)), random_face_data(64, seed=2)
    try:
        generate(net, vae, face, random_audio(4, 4, seed=3), GenerationSettings(steps=1, clip_frames=4,
                                                                                 device="meta"))
    except (RuntimeError, NotImplementedError) as e:
        assert "meta" in str(e).lower() or "device" in str(e).lower()
    else:
        raise AssertionError("a meta compute device with CPU weights should not run")
