"""The attention hook: SDPA by default, a host function when installed, ComfyUI's selection."""

import torch

from hallo_core.models.attention import attention, set_attention, use_attention
from tests.comfy_server import run_in_comfy_python
from tests.support.tiny_engine import build_tiny_net


def _unet_out(net):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 8, 8, generator=g)
    ctx = torch.randn(2, 4, 32, generator=g)
    return net.reference_unet(x, 0, ctx, bank_dtype=None)


def test_default_is_sdpa_exactly():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 8, generator=g) for _ in range(3))
    assert torch.equal(attention(q, k, v), torch.nn.functional.scaled_dot_product_attention(q, k, v))
    assert torch.equal(attention(q, k, v, scale=8 ** -0.5),
                       torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=8 ** -0.5))


def test_installed_function_is_called_by_the_network():
    net = build_tiny_net(seed=0)
    calls = []

    def fn(q, k, v):
        calls.append(q.shape)
        return torch.nn.functional.scaled_dot_product_attention(q, k, v)

    base = _unet_out(net)
    with use_attention(fn):
        hooked = _unet_out(net)
    assert calls and all(len(s) == 4 for s in calls)
    n = len(calls)
    _unet_out(net)
    assert len(calls) == n  # the block ended: back to SDPA
    prev = set_attention(fn)
    try:
        _unet_out(net)
    finally:
        set_attention(prev)
    assert len(calls) == 2 * n
    for a, b in zip(base.values() if isinstance(base, dict) else [base],
                    hooked.values() if isinstance(hooked, dict) else [hooked]):
        assert torch.equal(a, b)


def test_comfy_optimized_attention_matches_default():
    out = run_in_comfy_python(r"""
import json, torch
torch.set_num_threads(1)
from hallo_core.models.attention import use_attention
ca = importlib.import_module(name + ".nodes.comfy_attention")
import comfy.ldm.modules.attention as cattn
spec = importlib.util.spec_from_file_location("tiny_engine", os.path.join(repo, "tests/support/tiny_engine.py"))
te = importlib.util.module_from_spec(spec); spec.loader.exec_module(te)
net = te.build_tiny_net(seed=0)
g = torch.Generator().manual_seed(0)
x = torch.randn(2, 4, 8, 8, generator=g); ctx = torch.randn(2, 4, 32, generator=g)
base = net.reference_unet(x, 0, ctx, bank_dtype=None)
calls = [0]
real = cattn.optimized_attention
def counting(*a, **k):
    calls[0] += 1
    return cattn.attention_pytorch(*a, **k)
cattn.optimized_attention = counting
with use_attention(ca.comfy_attention):
    hooked = net.reference_unet(x, 0, ctx, bank_dtype=None)
cattn.optimized_attention = real
with use_attention(ca.comfy_attention):
    selected = net.reference_unet(x, 0, ctx, bank_dtype=None)
vals = lambda o: list(o.values()) if isinstance(o, dict) else [o]
d1 = max(float((a - b).abs().max()) for a, b in zip(vals(base), vals(hooked)))
d2 = max(float((a - b).abs().max()) for a, b in zip(vals(base), vals(selected)))
print(json.dumps({"calls": calls[0], "diff": d1, "diff_selected": d2, "selected": real.__name__}))
""")
    assert out["calls"] > 0
    # ComfyUI's pytorch backend is SDPA itself: equal; its CPU default (sub-quadratic, chunked
    # softmax) rounds differently, measured 1.2e-4 on these banks
    assert out["diff"] <= 1e-6 and out["diff_selected"] <= 1e-3, out
