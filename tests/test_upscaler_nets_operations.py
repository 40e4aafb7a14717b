"""Every Linear/Conv2d/GroupNorm/LayerNorm/Embedding is built through the ``operations`` argument."""
import types

import pytest
import torch
from torch import nn

from hallo_core.models.upscaler import ParseNet, RetinaFace, RRDBNet, TemporalCodeFormer


class _Marked:
    pass


def _namespace():
    names = ("Linear", "Conv2d", "GroupNorm", "LayerNorm", "Embedding")
    return types.SimpleNamespace(**{n: type(n, (getattr(nn, n), _Marked), {}) for n in names})


CASES = [
    (TemporalCodeFormer, dict(img_size=32, nf=8, ch_mult=(1, 2, 2), res_blocks=1, attn_resolutions=(8,), emb_dim=8,
                              dim_embd=16, n_head=2, n_layers=1, codebook_size=32, connect_list=("16", "32"),
                              norm_groups=4), torch.rand(1, 2, 3, 32, 32)),
    (RetinaFace, dict(base=4, layers=(1, 1, 1, 1), out_channel=16), torch.rand(1, 3, 32, 32)),
    (ParseNet, dict(in_size=32, out_size=32, min_feat_size=8, base_ch=8, res_depth=2, ch_range=(8, 16)),
     torch.rand(1, 3, 32, 32)),
    (RRDBNet, dict(num_feat=8, num_block=1, num_grow_ch=4), torch.rand(1, 3, 16, 16)),
]


@pytest.mark.parametrize("cls,cfg,x", CASES, ids=[c[0].__name__ for c in CASES])
def test_layers_come_from_operations_and_results_match(cls, cfg, x):
    torch.manual_seed(0)
    plain = cls(**cfg).eval()
    routed = cls(operations=_namespace(), **cfg).eval()
    kinds = (nn.Linear, nn.Conv2d, nn.GroupNorm, nn.LayerNorm, nn.Embedding)
    layers = [m for m in routed.modules() if isinstance(m, kinds)]
    assert layers and all(isinstance(m, _Marked) for m in layers)
    routed.load_state_dict(plain.state_dict(), strict=True)
    with torch.no_grad():
        if cls is TemporalCodeFormer:
            a, b = plain.inference(x)[0], routed.inference(x)[0]
        else:
            a, b = plain(x), routed(x)
            a, b = (a[0], b[0]) if isinstance(a, tuple) else (a, b)
    assert torch.equal(a, b)


def test_namespace_without_batchnorm_or_embedding_falls_back_to_torch():
    ops = _namespace()  # like comfy.ops: no BatchNorm2d, and here no Embedding either
    del ops.Embedding
    codeformer = TemporalCodeFormer(operations=ops, **CASES[0][1])
    assert type(codeformer.quantize.embedding) is nn.Embedding
    assert isinstance(codeformer.feat_emb, _Marked)
    retinaface = RetinaFace(operations=ops, **CASES[1][1])
    assert type(retinaface.body.bn1) is nn.BatchNorm2d
    assert isinstance(retinaface.body.conv1, _Marked)
