"""Shared builders for the audio tests (tiny random wav2vec2, random MDX ONNX model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def tiny_config(layers: int = 2):
    from transformers import Wav2Vec2Config

    return Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=layers, num_attention_heads=2, intermediate_size=64,
        conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
        vocab_size=8,
    )


def tiny_encoder(seed: int = 0):
    from hallo_core.audio import HalloWav2Vec

    torch.manual_seed(seed)
    return HalloWav2Vec.from_config(tiny_config())


def save_official_folder(
    folder: Path, config, spelling: str = "parametrizations", ctc_prefix: bool = False, seed: int = 0
):
    """Random Wav2Vec2Model saved like the official folder, with the chosen pos-conv key spelling."""
    import json

    from safetensors.torch import save_file
    from transformers import Wav2Vec2Model

    torch.manual_seed(seed)
    model = Wav2Vec2Model(config).eval()
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if spelling == "weight_g":
        old = {"parametrizations.weight.original0": "weight_g", "parametrizations.weight.original1": "weight_v"}
        for a, b in old.items():
            state = {k.replace(a, b): v for k, v in state.items()}
    if ctc_prefix:
        state = {"wav2vec2." + k: v for k, v in state.items()}
        state["lm_head.weight"] = torch.zeros(config.vocab_size, config.hidden_size)
        state["lm_head.bias"] = torch.zeros(config.vocab_size)
    folder.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(str(folder))
    with open(folder / "preprocessor_config.json", "w") as f:
        json.dump({"do_normalize": True, "feature_extractor_type": "Wav2Vec2FeatureExtractor", "feature_size": 1,
                   "padding_side": "right", "padding_value": 0.0, "return_attention_mask": False,
                   "sampling_rate": 16000}, f)
    save_file(state, str(folder / "model.safetensors"))
    return model, state


def make_mdx_onnx(path: Path, kind: str = "random", dim_f: int = 3072, dim_t: int = 256, seed: int = 0) -> Path:
    """ONNX model with Kim_Vocal_2's signature: input [N, 4, dim_f, dim_t] -> output, same shape."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4, dim_f, dim_t])
    out = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 4, dim_f, dim_t])
    if kind == "identity":
        nodes, inits = [helper.make_node("Identity", ["input"], ["output"])], []
    else:
        rng = np.random.default_rng(seed)
        w = numpy_helper.from_array((rng.standard_normal((4, 4, 3, 3)) * 0.2).astype(np.float32), "w")
        b = numpy_helper.from_array((rng.standard_normal(4) * 0.01).astype(np.float32), "b")
        nodes = [helper.make_node("Conv", ["input", "w", "b"], ["output"], pads=[1, 1, 1, 1])]
        inits = [w, b]
    graph = helper.make_graph(nodes, "mdx_stub", [inp], [out], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def tone(seconds: float, sr: int, freqs=(440.0,), channels: int = 1, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    mono = sum(np.sin(2 * np.pi * f * t) for f in freqs) * (amp / len(freqs))
    chans = [mono * (1.0 - 0.3 * c) for c in range(channels)]
    return np.stack(chans).astype(np.float32)
