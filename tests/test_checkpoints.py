"""Strict weight loading, conversion and error messages for bad checkpoints."""

import pytest
import torch

from hallo_core.io.checkpoints import (
    CheckpointError,
    convert_to_safetensors,
    load_hallo_weights,
    load_state_dict_file,
)
from tests.support.tiny_unets import TinyParts, randomize, rel, run_clip, tiny_inputs


@pytest.fixture(scope="module")
def trained():
    p = TinyParts().eval()
    randomize(p, seed=11)
    return p


@pytest.fixture(scope="module")
def saved(trained, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "net.pth"
    torch.save(trained.state_dict(), path)
    return path


def test_round_trip_pth_gives_identical_output(trained, saved):
    fresh = TinyParts().eval()
    load_hallo_weights(fresh, saved)
    inp = tiny_inputs(frames=2)
    a, _ = run_clip(trained, inp)
    b, _ = run_clip(fresh, inp)
    assert torch.equal(a, b)


def test_load_into_meta_built_model(trained, saved):
    with torch.device("meta"):
        net = TinyParts()
    load_hallo_weights(net, saved)
    assert not any(p.is_meta for p in net.parameters())
    key = "denoising_unet.conv_in.weight"
    assert torch.equal(net.state_dict()[key], trained.state_dict()[key])


def test_convert_to_fp16_safetensors(trained, saved, tmp_path):
    dst = tmp_path / "net.safetensors"
    n = convert_to_safetensors(saved, dst)
    sd = load_state_dict_file(dst)
    assert n == len(sd) == len(trained.state_dict())
    assert all(v.dtype == torch.float16 for v in sd.values())
    fresh = TinyParts().eval()
    load_hallo_weights(fresh, dst)  # cast back to the fp32 model
    inp = tiny_inputs(frames=2)
    a, _ = run_clip(trained, inp)
    b, _ = run_clip(fresh, inp)
    assert rel(b, a) < 5e-3  # fp16 weight rounding only


def _write(sd, path):
    torch.save(sd, path)
    return path


def test_missing_key_is_named(trained, tmp_path):
    sd = dict(trained.state_dict())
    del sd["denoising_unet.conv_out.bias"]
    path = _write(sd, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError) as e:
        load_hallo_weights(TinyParts(), path)
    msg = str(e.value)
    assert "missing.pth" in msg and "denoising_unet.conv_out.bias" in msg and "missing keys" in msg


def test_unexpected_key_is_named(trained, tmp_path):
    sd = dict(trained.state_dict())
    sd["denoising_unet.extra.weight"] = torch.zeros(3)
    path = _write(sd, tmp_path / "extra.pth")
    with pytest.raises(CheckpointError) as e:
        load_hallo_weights(TinyParts(), path)
    assert "extra.pth" in str(e.value) and "denoising_unet.extra.weight" in str(e.value)


def test_wrong_shape_is_named(trained, tmp_path):
    sd = dict(trained.state_dict())
    sd["imageproj.norm.weight"] = torch.zeros(7)
    path = _write(sd, tmp_path / "shape.pth")
    with pytest.raises(CheckpointError) as e:
        load_hallo_weights(TinyParts(), path)
    msg = str(e.value)
    assert "shape.pth" in msg and "imageproj.norm.weight" in msg and "(7,)" in msg


def test_truncated_file_gives_clear_error(saved, tmp_path):
    data = saved.read_bytes()
    bad = tmp_path / "truncated.pth"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated.pth.*truncated or corrupt"):
        load_state_dict_file(bad)
    bad_st = tmp_path / "truncated.safetensors"
    bad_st.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":")
    with pytest.raises(CheckpointError, match="truncated.safetensors"):
        load_state_dict_file(bad_st)


def test_pickled_objects_are_refused(tmp_path):
    import fractions

    path = tmp_path / "evil.pth"
    torch.save({"x": fractions.Fraction(1, 3)}, path)  # any non-tensor global needs full unpickling
    with pytest.raises(CheckpointError, match="evil.pth.*refusing to unpickle"):
        load_state_dict_file(path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_state_dict_file(tmp_path / "nope.pth")
