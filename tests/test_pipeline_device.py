"""The compute device and dtype come from the settings when given, else from the weights."""

import torch

from hallo_core.io.vae import VaeCodec
from hallo_core.media.video import MemorySink
from hallo_core.pipeline.generate import GenerationSettings, generate
from hallo_core.pipeline.sampler import model_device, model_dtype
from tests.support.tiny_engine import build_tiny_net, build_tiny_vae, random_audio, random_face_data


def test_settings_device_and_dtype_win_over_the_weights():
    net = build_tiny_net(seed=0)
    assert model_device(net) == torch.device("cpu") and model_dtype(net) == torch.float32
    st = GenerationSettings(device="meta", dtype=torch.float16)
    assert model_device(net, st) == torch.device("meta") and model_dtype(net, st) == torch.float16


def test_explicit_device_and_dtype_give_the_same_frames():
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


def test_comfy_ops_net_in_a_partially_loaded_patcher_gives_the_same_frames():
    from tests.comfy_server import run_in_comfy_python

    out = run_in_comfy_python(r"""
import json, torch
torch.set_num_threads(1)
spec = importlib.util.spec_from_file_location("tiny_engine", os.path.join(repo, "tests/support/tiny_engine.py"))
te = importlib.util.module_from_spec(spec); spec.loader.exec_module(te)
import comfy.ops, comfy.model_patcher
from hallo_core.models import build_hallo_net
from hallo_core.io.vae import VaeCodec
from hallo_core.media.video import MemorySink
from hallo_core.pipeline.generate import GenerationSettings, generate
plain = te.build_tiny_net(seed=0)
net = build_hallo_net(te.tiny_unet_config(), operations=comfy.ops.manual_cast).eval().requires_grad_(False)
net.load_state_dict(plain.state_dict())
cpu = torch.device("cpu")
patcher = comfy.model_patcher.ModelPatcher(net, load_device=cpu, offload_device=cpu)
loaded = patcher.partially_load(cpu, extra_memory=1 << 20)
vae, face = VaeCodec(te.build_tiny_vae(seed=1)), te.random_face_data(64, seed=2)
audio = te.random_audio(4, 4, seed=3)
res = []
for n, extra in ((plain, {}), (patcher.model, dict(device="cpu", dtype=torch.float32))):
    sink = MemorySink(torch.float32)
    generate(n, vae, face, audio, GenerationSettings(steps=1, clip_frames=4, **extra), sink=sink)
    res.append(sink.images())
print(json.dumps({"equal": bool(torch.equal(res[0], res[1])), "loaded": int(loaded or 0),
                  "diff": float((res[0] - res[1]).abs().max())}))
""")
    # on CPU the load and offload devices coincide, so partial loading moves nothing: this
    # checks that a comfy.ops network inside a patcher runs the same math, not the offload
    assert out["equal"], out
