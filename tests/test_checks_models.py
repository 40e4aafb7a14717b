"""Model files checked by their key lists and headers, without reading weights."""

from __future__ import annotations

import json
import io
import shutil

import pytest
import torch

from hallo_core.checks import check_model_files, expected_net_keys
from hallo_core.errors import UserError
from hallo_core.io.checkpoints import CheckpointError
from hallo_core.assets.headers import compare_manifest, onnx_check, safetensors_manifest, torch_manifest, zip_check
from tests.support.models_mirror import mirror, replace, shared_tiny_models


@pytest.fixture(scope="module")
def models():
    return shared_tiny_models()


@pytest.fixture
def copy(models, tmp_path):
    """A linked copy of the tiny models folder; damage files only through own()/replace()."""
    return mirror(models, tmp_path / "models")


def test_meta_built_net_keys_are_the_official_manifest(reference_dir):
    rows = [line.rstrip("\n").split("\t") for line in (reference_dir / "hallo_net_keys.tsv").read_text().splitlines()
            if line and not line.startswith("#")]
    official = {k: tuple(int(x) for x in s.split("x")) if s else () for k, s in rows}
    assert len(official) == 2656
    assert expected_net_keys(None) == official


def test_torch_manifest_lists_keys_and_shapes_without_reading(tmp_path):
    sd = {"a.weight": torch.zeros(3, 2), "b": torch.nn.Parameter(torch.ones(5, dtype=torch.float16)),
          "nested": {"c": torch.arange(4)}}
    torch.save(sd, tmp_path / "w.pth")
    m = torch_manifest(tmp_path / "w.pth")
    assert {k: (v.shape, v.dtype) for k, v in m.items()} == {
        "a.weight": ((3, 2), "float32"), "b": ((5,), "float16"), "nested.c": ((4,), "int64")}
    torch.save({"state_dict": {"x": torch.zeros(1)}}, tmp_path / "wrapped.pth")
    assert list(torch_manifest(tmp_path / "wrapped.pth")) == ["x"]


def test_truncated_torch_archive_is_found(tmp_path):
    torch.save({"a": torch.zeros(1000, 100)}, tmp_path / "w.pth")
    data = (tmp_path / "w.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.pth.*truncated or corrupt"):
        torch_manifest(tmp_path / "cut.pth")
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match="the file is empty"):
        torch_manifest(tmp_path / "empty.pth")
    # a storage record shorter than its tensor, with the archive's directory intact
    import zipfile

    with zipfile.ZipFile(tmp_path / "w.pth") as z, zipfile.ZipFile(tmp_path / "short.pth", "w") as out:
        for name in z.namelist():
            out.writestr(name, z.read(name)[:100] if name.endswith("data/0") else z.read(name))
    with pytest.raises(CheckpointError, match="short.pth.*truncated or corrupt"):
        torch_manifest(tmp_path / "short.pth")
    (tmp_path / "page.pth").write_text("<html>404 Not Found</html>")
    with pytest.raises(CheckpointError, match="page.pth .not a torch archive"):
        torch_manifest(tmp_path / "page.pth")
    torch.save({"a": torch.zeros(2)}, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    assert torch_manifest(tmp_path / "legacy.pth") is None  # cannot be listed unread: checked when loaded


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch pwned_by_test",))


def test_unsafe_pickle_is_refused_by_name_and_never_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"x": _Evil()}, tmp_path / "evil.pth")
    for read in (torch_manifest,):
        with pytest.raises(CheckpointError, match=r"evil.pth was refused: .*\((posix|nt)\.system\)"):
            read(tmp_path / "evil.pth")
    from hallo_core.io.checkpoints import load_state_dict_file

    # torch's own wording for a blocked module is "unsupported GLOBAL": still said to be refused
    with pytest.raises(CheckpointError, match=r"was refused: .*system.*refusing to unpickle"):
        load_state_dict_file(tmp_path / "evil.pth")
    assert not (tmp_path / "pwned_by_test").exists()


def test_safetensors_header_and_truncation(tmp_path):
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(4, 4), "b": torch.ones(3, dtype=torch.float16)}, str(tmp_path / "w.safetensors"))
    m = safetensors_manifest(tmp_path / "w.safetensors")
    assert {k: (v.shape, v.dtype) for k, v in m.items()} == {"a": ((4, 4), "f32"), "b": ((3,), "f16")}
    data = (tmp_path / "w.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:-20])
    with pytest.raises(CheckpointError, match=r"cut.safetensors \(safetensors: .*not fully covered\).*truncated"):
        safetensors_manifest(tmp_path / "cut.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(CheckpointError, match=r"junk.safetensors \(safetensors: .*header"):
        safetensors_manifest(tmp_path / "junk.safetensors")


def test_compare_manifest_is_one_line_naming_the_mismatch(tmp_path):
    from hallo_core.assets.headers import TensorInfo

    found = {"a": TensorInfo((2,), "float32"), "extra": TensorInfo((1,), "float32")}
    with pytest.raises(CheckpointError) as e:
        compare_manifest(found, {"a": (3,), "b": (1,)}, "net.pth")
    msg = str(e.value)
    assert "\n" not in msg and "1 missing keys: b" in msg and "1 unexpected keys: extra" in msg
    assert "a: file (2,) vs model (3,)" in msg


def test_onnx_and_zip_bundles(models, tmp_path):
    good = models / "face_analysis" / "models" / "glintr100.onnx"
    fields = onnx_check(good)
    assert fields[1] == 1 and fields[7] == 1
    data = good.read_bytes()
    (tmp_path / "cut.onnx").write_bytes(data[:-7])
    with pytest.raises(CheckpointError, match="cut.onnx.*(runs past the end|ends mid-field)"):
        onnx_check(tmp_path / "cut.onnx")
    (tmp_path / "text.onnx").write_text("<html>404 Not Found</html>")
    with pytest.raises(CheckpointError, match="text.onnx"):
        onnx_check(tmp_path / "text.onnx")
    import zipfile

    with zipfile.ZipFile(tmp_path / "lm.task", "w") as z:
        z.writestr("face_detector.tflite", b"x")
    with pytest.raises(CheckpointError, match="missing face_landmarks_detector.tflite"):
        zip_check(tmp_path / "lm.task", ["face_detector.tflite", "face_landmarks_detector.tflite"])


def test_tiny_models_folder_passes_with_notes(models):
    notes = check_model_files(models)
    assert any("Kim_Vocal_2.onnx is absent" in n for n in notes)
    assert check_model_files(models, "hallo2", separator=False) == [n for n in notes if "Kim_Vocal" not in n]


def _user_error(root, bundle="hallo"):
    from hallo_core.cli.common import words

    with pytest.raises(UserError) as e:
        check_model_files(root, bundle)
    assert e.value.key == "models"
    msg = str(e.value.placed(words))
    assert "\n" not in msg and "(--models)" in msg
    return msg


def _saved(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def test_bad_net_files_are_named_before_any_weights_are_read(copy, tmp_path, monkeypatch):
    from hallo_core.io.checkpoints import TRACE_ENV

    log = tmp_path / "trace.log"
    monkeypatch.setenv(TRACE_ENV, str(log))
    net = copy / "hallo" / "net.pth"
    sd = torch.load(net, weights_only=True)
    key = next(iter(sd))
    replace(net, _saved({k: v for k, v in sd.items() if k != key}))
    assert f"1 missing keys: {key}" in _user_error(copy)
    sd2 = dict(sd)
    sd2[key] = torch.zeros(1)
    replace(net, _saved(sd2))
    assert "shape mismatches" in _user_error(copy)
    replace(net, net.read_bytes()[:1000])
    assert "truncated or corrupt" in _user_error(copy)
    net.unlink()
    msg = _user_error(copy)
    assert msg.startswith("missing hallo:") and "download --models" in msg
    assert not log.exists()  # no loader ran: every failure came from the key lists


def test_other_components_are_checked(copy):
    st = copy / "sd-vae-ft-mse" / "diffusion_pytorch_model.safetensors"
    from safetensors.torch import load_file, save_file

    vae = load_file(str(st))
    st.unlink()  # a new file, not a write through the link
    save_file({k: v for k, v in vae.items() if not k.startswith("decoder.conv_out")}, str(st))
    assert "decoder.conv_out" in _user_error(copy)
    shutil.rmtree(copy / "sd-vae-ft-mse")
    assert _user_error(copy).startswith("missing vae:")


def test_wav2vec_and_face_files_are_checked(copy):
    w2v = copy / "wav2vec" / "wav2vec2-base-960h"
    cfg = json.loads((w2v / "config.json").read_text())
    cfg["num_hidden_layers"] = 13  # the weights hold 12 layers
    replace(w2v / "config.json", json.dumps(cfg).encode())
    assert "encoder.layers.12" in _user_error(copy)
    cfg["num_hidden_layers"] = 12
    replace(w2v / "config.json", json.dumps(cfg).encode())
    onnx = copy / "face_analysis" / "models" / "scrfd_10g_bnkps.onnx"
    replace(onnx, onnx.read_bytes()[:50])
    assert "scrfd_10g_bnkps.onnx" in _user_error(copy)
    replace(copy / "stable-diffusion-v1-5" / "unet" / "config.json", b"{not json")
    assert "UNet config" in _user_error(copy)


def test_a_wav2vec_folder_without_config_json_is_named_as_missing(copy):
    """Not as a shape mismatch against the config transformers falls back to."""
    from hallo_core.errors import ModelMissingError

    (copy / "wav2vec" / "wav2vec2-base-960h" / "config.json").unlink()  # the link, not the shared file
    msg = _user_error(copy)
    assert "has no config.json" in msg and "mismatch" not in msg
    with pytest.raises(ModelMissingError) as e:
        check_model_files(copy)
    assert e.value.component == "wav2vec" and e.value.path.endswith("config.json")


@pytest.mark.parametrize("change,needle", [
    ({"norm_num_groups": 32, "block_out_channels": [8, 16]}, "do not split into 32 groups"),
    ({"latent_channels": 16}, "16 latent channels"),
    ({"_class_name": "AutoencoderTiny"}, "describes a AutoencoderTiny"),
])
def test_a_vae_of_another_architecture_is_named(copy, change, needle):
    """A VAE folder diffusers cannot build, or whose latents Hallo's UNet cannot take: one line."""
    cfg_path = copy / "sd-vae-ft-mse" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    replace(cfg_path, json.dumps({**cfg, **change}).encode())
    msg = _user_error(copy)
    assert needle in msg and "is not the config of Stable Diffusion's VAE" in msg


def test_missing_models_folder(tmp_path):
    msg = _user_error(tmp_path / "nowhere")
    assert "does not exist" in msg
