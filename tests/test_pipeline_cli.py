"""Models folder resolution, clear errors, and the convert command (no downloads)."""

import torch

from hallo_core.cli.main import main
from hallo_core.assets.layout import BUNDLES, HALLO_REPO, ModelFileMissing, resolve


def test_missing_components_name_path_and_repo(tmp_path):
    (tmp_path / "hallo").mkdir()
    (tmp_path / "hallo" / "net.pth").write_bytes(b"x")
    m = resolve(tmp_path)
    assert m.require("hallo") == tmp_path / "hallo" / "net.pth"
    missing = m.missing("hallo")
    assert len(missing) == len(BUNDLES["hallo"]) - 1
    joined = "\n".join(missing)
    assert str(tmp_path / "sd-vae-ft-mse") in joined and HALLO_REPO in joined
    try:
        m.require("hallo2")
    except ModelFileMissing as e:
        assert "hallo2/net.pth" in str(e) and "fudan-generative-ai/hallo2" in str(e)
    else:
        raise AssertionError("missing hallo2/net.pth not reported")
    assert m.unet_config() is None  # built-in SD1.5 config then


def test_generate_reports_missing_models(tmp_path, capsys):
    from tests.test_cli_help import _image_and_audio

    image, audio = _image_and_audio(tmp_path)
    rc = main(["generate", "--models", str(tmp_path), "--image", str(image), "--audio", str(audio),
               "--out", str(tmp_path / "o.mp4"), "--device", "cpu"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "hallo/net.pth" in err and "wav2vec2-base-960h" in err


def test_convert_writes_fp16_safetensors(tmp_path):
    from safetensors.torch import load_file

    from tests.support.tiny_engine import build_tiny_net

    sd = build_tiny_net().state_dict()
    src = tmp_path / "net.pth"
    torch.save(sd, src)
    assert main(["convert", str(src), str(tmp_path / "net.safetensors")]) == 0
    out = load_file(str(tmp_path / "net.safetensors"))
    assert set(out) == set(sd)
    k = next(k for k, v in sd.items() if v.is_floating_point())
    assert out[k].dtype == torch.float16 and torch.allclose(out[k].float(), sd[k], atol=1e-2)
