"""Temporal CodeFormer on tiny random configurations."""
import pytest
import torch
from torch import nn

from hallo_core.models.upscaler import TemporalCodeFormer, adaptive_instance_normalization
from hallo_core.models.upscaler.codeformer import TransformerSALayer
from hallo_core.models.upscaler.common import MultiheadAttention

TINY = dict(img_size=32, nf=8, ch_mult=(1, 2, 2), res_blocks=1, attn_resolutions=(8,), emb_dim=8,
            dim_embd=16, n_head=2, n_layers=2, codebook_size=32, connect_list=("16", "32"), norm_groups=4)


def _tiny(seed=0):
    torch.manual_seed(seed)
    net = TemporalCodeFormer(**TINY).eval()
    with torch.no_grad():
        net.position_emb.normal_(0, 0.5)
        net.quantize.embedding.weight.normal_()
    return net


def test_multihead_attention_matches_torch_reference():
    torch.manual_seed(0)
    ref = nn.MultiheadAttention(16, 4).eval()
    ours = MultiheadAttention(16, 4).eval()
    with torch.no_grad():
        ref.in_proj_bias.normal_()
        ref.out_proj.bias.normal_()
    ours.load_state_dict(ref.state_dict(), strict=True)
    q = torch.randn(3, 7, 16)
    v = torch.randn(3, 7, 16)
    with torch.no_grad():
        want = ref(q.transpose(0, 1), q.transpose(0, 1), v.transpose(0, 1))[0].transpose(0, 1)
        got = ours(q, q, v)
    assert torch.allclose(got, want, atol=1e-5)
    assert list(ours.state_dict()) == list(ref.state_dict())


def test_temporal_layer_is_permutation_equivariant_over_frames():
    torch.manual_seed(0)
    layer = TransformerSALayer(16, 2, 32, nn).eval()
    b, f, length = 2, 5, 6
    x = torch.randn(b * f, length, 16)
    pos = torch.randn(length, 16)
    perm = torch.tensor([3, 0, 4, 1, 2])
    with torch.no_grad():
        y = layer(x, pos, f).view(b, f, length, 16)
        y_p = layer(x.view(b, f, length, 16)[:, perm].reshape(b * f, length, 16), pos, f).view(b, f, length, 16)
    assert torch.allclose(y_p, y[:, perm], atol=1e-5)
    # ...and frames really interact: changing one frame changes the others' outputs
    x2 = x.clone().view(b, f, length, 16)
    x2[:, 0] += torch.randn(b, length, 16)  # (a constant shift would vanish in LayerNorm)
    with torch.no_grad():
        y2 = layer(x2.reshape(b * f, length, 16), pos, f).view(b, f, length, 16)
    assert not torch.allclose(y2[:, 1:], y[:, 1:], atol=1e-4)


def test_inference_shapes_and_frame_permutation():
    net = _tiny()
    torch.manual_seed(1)
    x = torch.rand(1, 4, 3, 32, 32) * 2 - 1
    out, idx = net.inference(x, w=0.7, adain=True)
    assert out.shape == (1, 4, 3, 32, 32) and idx.shape == (4, 64, 1)
    perm = torch.tensor([2, 0, 3, 1])
    out_p, idx_p = net.inference(x[:, perm], w=0.7, adain=True)
    assert torch.equal(idx_p.view(4, -1), idx.view(4, -1)[perm])
    assert torch.allclose(out_p, out[:, perm], atol=1e-5)


def test_frame_chunking_does_not_change_the_result():
    net = _tiny(3)
    x = torch.rand(2, 3, 3, 32, 32) * 2 - 1
    full, idx = net.inference(x, w=0.5)
    chunked, idx_c = net.inference(x, w=0.5, frame_chunk=2, offload_skips=torch.device("cpu"))
    assert torch.equal(idx, idx_c)
    assert torch.allclose(full, chunked, atol=1e-5)


def test_fidelity_weight_uses_fusion_blocks_only_when_positive():
    net = _tiny(4)
    x = torch.rand(1, 2, 3, 32, 32) * 2 - 1
    base0, _ = net.inference(x, w=0.0)
    base1, _ = net.inference(x, w=1.0)
    with torch.no_grad():
        for p in net.fuse_convs_dict.parameters():
            p.add_(0.1)
    again0, _ = net.inference(x, w=0.0)
    again1, _ = net.inference(x, w=1.0)
    assert torch.equal(base0, again0)
    assert not torch.allclose(base1, again1, atol=1e-4)


def test_adain_matches_style_statistics():
    torch.manual_seed(0)
    content = torch.randn(3, 4, 5, 5) * 3 + 2
    style = torch.randn(3, 4, 5, 5) * 0.5 - 1
    out = adaptive_instance_normalization(content, style)
    assert torch.allclose(out.mean((2, 3)), style.mean((2, 3)), atol=1e-5)
    # std uses the unbiased variance plus eps 1e-5, as upstream
    want = (style.flatten(2).var(2) + 1e-5).sqrt()
    got = (out.flatten(2).var(2) + 1e-5).sqrt()
    assert torch.allclose(got, want, atol=1e-3)


def test_codebook_lookup_equals_codebook_rows():
    net = _tiny(5)
    lq = torch.randn(2, 8, 8, 8)
    idx = net.predict_codes(lq, frames=2)
    feat = net.quantize.lookup(idx, 2, 8, 8, torch.float32)
    rows = net.quantize.embedding.weight[idx.view(-1)].view(2, 8, 8, 8).permute(0, 3, 1, 2)
    assert torch.equal(feat, rows)


def test_rejects_wrong_face_size():
    net = _tiny()
    with pytest.raises(ValueError, match="32x32"):
        net.inference(torch.zeros(1, 1, 3, 16, 16))
