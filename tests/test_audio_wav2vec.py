"""Hallo's wav2vec2 forward and loading of the official folder layout."""

import json

import numpy as np
import pytest
import torch

from hallo_core.audio import HalloWav2Vec, normalize_waveform
from tests._audio_util import save_official_folder, tiny_config


def _speechish(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    voiced = 0.3 * np.sin(2 * np.pi * 150 * t) * (1 + np.sin(2 * np.pi * 3 * t))
    return (voiced + 0.05 * rng.standard_normal(n)).astype(np.float32)


def test_normalisation_matches_feature_extractor():
    from transformers import Wav2Vec2FeatureExtractor

    fe = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True)
    x = _speechish(16000) * 3 + 0.2
    ref = np.asarray(fe(x, sampling_rate=16000).input_values[0])
    np.testing.assert_allclose(normalize_waveform(x), ref, rtol=1e-5, atol=1e-6)
    # Silence: the 1e-7 epsilon keeps it finite (exact zeros).
    assert np.all(normalize_waveform(np.zeros(1000, np.float32)) == 0)


def test_forward_equals_transformers_when_no_interpolation_is_needed():
    """With num_frames equal to the CNN frame count the interpolation is the identity, so the
    stacked layer outputs must equal Wav2Vec2Model's hidden_states[1:]."""
    from transformers import Wav2Vec2Model

    torch.manual_seed(0)
    ref = Wav2Vec2Model(tiny_config()).eval()
    ours = HalloWav2Vec.from_config(tiny_config())
    ours.load_state_dict(ref.state_dict(), strict=False)
    x = torch.from_numpy(normalize_waveform(_speechish(8000)))[None]
    with torch.no_grad():
        hs = ref(x, output_hidden_states=True).hidden_states
    frames = hs[0].shape[1]
    out = ours(x, frames)
    expected = torch.stack(hs[1:], dim=2)[0]  # [T, L, D]
    assert out.shape == (frames, 2, 32)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_interpolation_is_align_corners_linear():
    torch.manual_seed(0)
    m = HalloWav2Vec.from_config(tiny_config())
    x = torch.from_numpy(normalize_waveform(_speechish(6400)))
    # 6400 samples -> 19 CNN frames; Hallo asks for ceil(6400/640) = 10.
    captured = {}

    def grab(mod, inp, out):
        captured["in"] = inp[0]

    hook = m.feature_projection.register_forward_hook(grab)
    m(x, 10)
    hook.remove()
    with torch.no_grad():
        cnn = m.feature_extractor(x[None])  # [1, C, 19]
    assert cnn.shape[-1] == 19
    pos = torch.linspace(0, 18, 10)
    lo = pos.floor().long().clamp(max=17)
    w = pos - lo
    manual = cnn[0, :, lo] * (1 - w) + cnn[0, :, lo + 1] * w
    torch.testing.assert_close(captured["in"][0], manual.T, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("ctc_prefix", [False, True])
def test_both_weight_norm_spellings_load_identically(tmp_path, ctc_prefix):
    cfg = tiny_config()
    _, state = save_official_folder(tmp_path / "a", cfg, spelling="parametrizations", ctc_prefix=ctc_prefix)
    save_official_folder(tmp_path / "b", cfg, spelling="weight_g", ctc_prefix=ctc_prefix)
    a = HalloWav2Vec.from_pretrained(tmp_path / "a")
    b = HalloWav2Vec.from_pretrained(tmp_path / "b")
    key = ("wav2vec2." if ctc_prefix else "") + "encoder.pos_conv_embed.conv.parametrizations.weight.original1"
    if key in state:
        torch.testing.assert_close(a.encoder.pos_conv_embed.conv.parametrizations.weight.original1, state[key])
    x = torch.from_numpy(normalize_waveform(_speechish(16000)))
    out_a, out_b = a(x, 25), b(x, 25)
    assert torch.equal(out_a, out_b)
    # And the conv really is the checkpoint's, not a fresh random init.
    fresh = HalloWav2Vec.from_config(tiny_config())
    assert not torch.equal(fresh.encoder.pos_conv_embed.conv.weight, a.encoder.pos_conv_embed.conv.weight)


def test_missing_pos_conv_fails_loudly(tmp_path):
    from safetensors.torch import load_file, save_file

    save_official_folder(tmp_path, tiny_config(), spelling="weight_g")
    state = load_file(str(tmp_path / "model.safetensors"))
    del state["encoder.pos_conv_embed.conv.weight_g"]
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="pos_conv_embed"):
        HalloWav2Vec.from_pretrained(tmp_path)


def test_unexpected_keys_fail(tmp_path):
    from safetensors.torch import load_file, save_file

    save_official_folder(tmp_path, tiny_config())
    state = load_file(str(tmp_path / "model.safetensors"))
    state["encoder.layers.9.attention.q_proj.weight"] = torch.zeros(32, 32)
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="unexpected"):
        HalloWav2Vec.from_pretrained(tmp_path)


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        HalloWav2Vec.from_pretrained(tmp_path)
    save_official_folder(tmp_path, tiny_config())
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        HalloWav2Vec.from_pretrained(tmp_path)


def test_pytorch_bin_and_preprocessor_config(tmp_path):
    _, state = save_official_folder(tmp_path, tiny_config(), spelling="weight_g", ctc_prefix=True)
    (tmp_path / "model.safetensors").unlink()
    torch.save(state, tmp_path / "pytorch_model.bin")
    with open(tmp_path / "preprocessor_config.json", "w") as f:
        json.dump({"do_normalize": False, "sampling_rate": 16000}, f)
    m = HalloWav2Vec.from_pretrained(tmp_path)
    assert m.do_normalize is False
    x = _speechish(100) * 5
    np.testing.assert_array_equal(m.normalize(x), x)


def test_base_config_shapes():
    """wav2vec2-base shapes (random init): [T, 12, 768] at exactly the requested frames."""
    from transformers import Wav2Vec2Config

    torch.manual_seed(0)
    m = HalloWav2Vec.from_config(Wav2Vec2Config())
    assert m.num_layers == 12 and m.hidden_size == 768
    x = torch.from_numpy(normalize_waveform(_speechish(16 * 640)))
    out = m(x, 16)
    assert out.shape == (16, 12, 768) and torch.isfinite(out).all()
    # Silence gives a defined (finite) result.
    assert torch.isfinite(m(torch.zeros(16 * 640), 16)).all()


@pytest.mark.parametrize("norm", ["group", "layer"])
def test_sliced_cnn_equals_feature_encoder(norm):
    """The memory-bounded CNN forward computes the same as transformers' feature encoder."""
    cfg = tiny_config()
    cfg.feat_extract_norm = norm
    torch.manual_seed(1)
    m = HalloWav2Vec.from_config(cfg)
    m.cnn_chunk = 7  # many slices, including a ragged last one
    x = torch.from_numpy(normalize_waveform(_speechish(9000)))[None]
    with torch.no_grad():
        ref = m.feature_extractor(x)
    torch.testing.assert_close(m._cnn(x), ref, rtol=1e-5, atol=1e-6)
