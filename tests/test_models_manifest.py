"""The SD1.5-config network has exactly the official net.pth keys and shapes (built on the meta device)."""

import torch

from hallo_core.models import build_hallo_net
from hallo_core.models.config import SD15_UNET_CONFIG, load_unet_config


def _manifest(path):
    out = {}
    for line in path.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        key, shape = line.split("\t")
        out[key] = tuple(int(s) for s in shape.split("x"))
    return out


def test_sd15_manifest_matches_net_pth(reference_dir):
    want = _manifest(reference_dir / "hallo_net_keys.tsv")
    net = build_hallo_net(device="meta")
    got = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert sorted(set(want) - set(got)) == []
    assert sorted(set(got) - set(want)) == []
    assert {k: s for k, s in got.items() if want[k] != s} == {}
    assert len(got) == 2656


def test_sd15_parameter_count_and_pe_buffers():
    net = build_hallo_net(device="meta")
    assert sum(p.numel() for p in net.parameters()) == 2_423_594_644
    pes = [b for n, b in net.named_buffers() if n.endswith("pos_encoder.pe")]
    assert len(pes) == 42 and sum(b.numel() for b in pes) == 1_208_320


def test_sd15_config_file_round_trip(tmp_path, reference_dir):
    cfg = load_unet_config(reference_dir / "sd15_unet_config.json")
    assert cfg == load_unet_config()
    unet_dir = tmp_path / "stable-diffusion-v1-5" / "unet"
    unet_dir.mkdir(parents=True)
    (unet_dir / "config.json").write_text((reference_dir / "sd15_unet_config.json").read_text())
    assert load_unet_config(tmp_path / "stable-diffusion-v1-5") == cfg


def test_reduced_config_changes_shapes(tmp_path):
    import json

    p = tmp_path / "config.json"
    p.write_text(json.dumps({**SD15_UNET_CONFIG, "block_out_channels": [32, 64, 64, 64]}))
    net = build_hallo_net(p, device="meta")
    sd = net.state_dict()
    assert tuple(sd["denoising_unet.conv_in.weight"].shape) == (32, 4, 3, 3)
    assert tuple(sd["face_locator.conv_out.weight"].shape) == (32, 128, 3, 3)
    # upstream sizes each audio module from its layer's input width, not the block's output width:
    # down_blocks.1 layer 0 is 32 wide
    assert tuple(sd["denoising_unet.down_blocks.1.audio_modules.0.proj_in.weight"].shape) == (32, 64, 1, 1)


def test_unsupported_config_is_rejected():
    import pytest

    with pytest.raises(ValueError, match="block channel"):
        build_hallo_net({**SD15_UNET_CONFIG, "block_out_channels": [48, 64, 64, 64]}, device="meta")
    with pytest.raises(ValueError, match="down_block_types"):
        build_hallo_net({**SD15_UNET_CONFIG, "down_block_types": ["DownBlock2D"] * 4}, device="meta")


def test_meta_build_allocates_nothing():
    net = build_hallo_net(device="meta", dtype=torch.float16)
    assert all(p.is_meta and p.dtype == torch.float16 for p in net.parameters())
