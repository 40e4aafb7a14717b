"""Strict loading of the upscaler weight files: round trips and clear errors on bad files."""
import pickle

import pytest
import torch

from hallo_core.io.upscaler_weights import (UpscalerWeightsError, load_parsenet, load_retinaface,
                                            load_rrdbnet_x2, load_temporal_codeformer)
from hallo_core.models.upscaler import ParseNet, RetinaFace, RRDBNet, TemporalCodeFormer

TINY_CF = dict(img_size=32, nf=8, ch_mult=(1, 2, 2), res_blocks=1, attn_resolutions=(8,), emb_dim=8,
               dim_embd=16, n_head=2, n_layers=1, codebook_size=32, connect_list=("16", "32"), norm_groups=4)
TINY_RF = dict(base=4, layers=(1, 1, 1, 1), out_channel=16)
TINY_PN = dict(in_size=32, out_size=32, min_feat_size=8, base_ch=8, res_depth=2, ch_range=(8, 16))
TINY_RR = dict(num_feat=8, num_block=1, num_grow_ch=4)


def _randomised(model):
    torch.manual_seed(0)
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.add_(torch.rand_like(t) * 0.05)  # away from default init (zeros, ones), stays finite
    return model.eval()


def _same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_codeformer_round_trip_params_ema(tmp_path):
    src = _randomised(TemporalCodeFormer(**TINY_CF))
    path = tmp_path / "net_g.pth"
    torch.save({"params_ema": src.state_dict(), "params": {}}, path)
    net = load_temporal_codeformer(path, **TINY_CF)
    assert _same(net, src) and not net.training
    assert not any(p.requires_grad for p in net.parameters())
    x = torch.rand(1, 2, 3, 32, 32) * 2 - 1
    out = net.inference(x)[0]
    assert torch.isfinite(out).all() and torch.equal(out, src.inference(x)[0])


def test_retinaface_strips_module_prefix(tmp_path):
    src = _randomised(RetinaFace(**TINY_RF))
    path = tmp_path / "detection_Resnet50_Final.pth"
    torch.save({"module." + k: v for k, v in src.state_dict().items()}, path)
    assert _same(load_retinaface(path, **TINY_RF), src)
    torch.save(src.state_dict(), path)   # bare keys load too
    net = load_retinaface(path, **TINY_RF)
    assert _same(net, src)
    assert net.body.bn1.num_batches_tracked.dtype == torch.int64


def test_parsenet_round_trip_and_dtype(tmp_path):
    src = _randomised(ParseNet(**TINY_PN))
    path = tmp_path / "parsing_parsenet.pth"
    torch.save(src.state_dict(), path)
    net = load_parsenet(path, dtype=torch.float64, **TINY_PN)
    assert net.out_mask_conv.conv2d.weight.dtype == torch.float64
    assert torch.equal(net.out_mask_conv.conv2d.weight.float(), src.out_mask_conv.conv2d.weight)


@pytest.mark.parametrize("key", ["params_ema", "params"])
def test_rrdb_prefers_params_ema_else_params(tmp_path, key):
    src = _randomised(RRDBNet(**TINY_RR))
    other = RRDBNet(**TINY_RR)
    path = tmp_path / "RealESRGAN_x2plus.pth"
    payload = {key: src.state_dict()}
    if key == "params_ema":
        payload["params"] = other.state_dict()   # must be ignored
    torch.save(payload, path)
    assert _same(load_rrdbnet_x2(path, **TINY_RR), src)


def test_missing_file_and_garbage(tmp_path):
    with pytest.raises(UpscalerWeightsError, match="not found"):
        load_parsenet(tmp_path / "nope.pth", **TINY_PN)
    bad = tmp_path / "garbage.pth"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(UpscalerWeightsError, match="garbage.pth"):
        load_parsenet(bad, **TINY_PN)


class _Evil:
    def __reduce__(self):
        return (print, ("code ran",))


def test_refuses_pickled_code(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as fh:
        pickle.dump({"x": _Evil()}, fh, protocol=2)
    with pytest.raises(UpscalerWeightsError, match="evil.pth"):
        load_parsenet(path, **TINY_PN)


def test_wrong_top_level_key_names_the_file(tmp_path):
    src = TemporalCodeFormer(**TINY_CF)
    path = tmp_path / "net_g.pth"
    torch.save({"params": src.state_dict()}, path)
    with pytest.raises(UpscalerWeightsError, match=r"net_g\.pth.*params_ema.*'params'"):
        load_temporal_codeformer(path, **TINY_CF)


@pytest.mark.parametrize("wrap", ["params_ema", "params", None])
def test_realesrgan_is_read_with_or_without_its_wrapper(tmp_path, wrap):
    """Conversions of RealESRGAN_x2plus.pth often hold the bare state dict: it is the same network."""
    src = _randomised(RRDBNet(scale=2, **TINY_RR))
    path = tmp_path / "x2.pth"
    torch.save({wrap: src.state_dict()} if wrap else src.state_dict(), path)
    assert _same(load_rrdbnet_x2(path, **TINY_RR), src)


def test_realesrgan_under_another_key_is_refused(tmp_path):
    path = tmp_path / "x2.pth"
    torch.save({"model": RRDBNet(scale=2, **TINY_RR).state_dict()}, path)
    with pytest.raises(UpscalerWeightsError, match=r"x2\.pth: none of the top-level keys \['params_ema', 'params'\]"):
        load_rrdbnet_x2(path, **TINY_RR)


def test_mismatches_are_listed(tmp_path):
    sd = RRDBNet(**TINY_RR).state_dict()
    sd.pop("conv_last.bias")
    sd["extra.weight"] = torch.zeros(1)
    sd["conv_first.weight"] = torch.zeros(8, 3, 3, 3)
    path = tmp_path / "x2.pth"
    torch.save({"params": sd}, path)
    with pytest.raises(UpscalerWeightsError) as err:
        load_rrdbnet_x2(path, **TINY_RR)
    msg = str(err.value)
    assert "x2.pth" in msg and "conv_last.bias" in msg and "extra.weight" in msg
    assert "conv_first.weight: file (8, 3, 3, 3) vs model (8, 12, 3, 3)" in msg


def test_full_size_checkpoint_of_the_wrong_network_is_rejected(tmp_path):
    # a ParseNet file handed to the detector loader (released configs, built on meta: cheap)
    with torch.device("meta"):
        keys = list(ParseNet().state_dict())
    path = tmp_path / "parsing_parsenet.pth"
    torch.save({k: torch.zeros(1) for k in keys[:3]}, path)
    with pytest.raises(UpscalerWeightsError, match="does not match RetinaFace"):
        load_retinaface(path)
