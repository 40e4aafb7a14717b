"""Tiny random-weight models written to disk in the official ``models/hallo`` folder layout.

Used by the CLI end-to-end and ComfyUI integration tests (and any test that needs a models folder): every
file has the official name, format and key layout, only the sizes are reduced so a CPU run takes
seconds. Nothing is downloaded.

    build_models_dir(root)  ->  root/
        hallo/net.pth, hallo2/net.pth                 random HalloNet of a tiny UNet config
        stable-diffusion-v1-5/unet/config.json         that tiny UNet config
        sd-vae-ft-mse/{config.json, diffusion_pytorch_model.safetensors}
        wav2vec/wav2vec2-base-960h/{config.json, preprocessor_config.json, model.safetensors}
        face_analysis/models/{scrfd_10g_bnkps.onnx, glintr100.onnx}

    write_upscaler_models(root, upscale_models_dir)  ->  (official sizes: the loaders accept no other)
        root/hallo2/net_g.pth                          random temporal CodeFormer ({"params_ema": ...})
        root/facelib/detection_Resnet50_Final.pth       RetinaFace-R50 whose class head never fires
        root/facelib/parsing_parsenet.pth               random ParseNet
        upscale_models_dir/RealESRGAN_x2plus.pth        tiny RRDBNet x2 (core's loader infers the size)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Union

import torch

PathLike = Union[str, Path]

# The SD1.5 block layout with small channels; 768-d cross attention is kept because the audio and
# image projections produce 768-d tokens (fixed by the released model).
TINY_UNET_CONFIG = {
    "block_out_channels": [32, 32, 64, 64],
    "layers_per_block": 1,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
    "cross_attention_dim": 768,
    "sample_size": 16,
}


def write_tiny_hallo(root: PathLike, seed: int = 0, versions=("hallo", "hallo2")) -> dict:
    """Random HalloNet (tiny UNet config) saved as <version>/net.pth plus the UNet config.json."""
    from hallo_core.models import build_hallo_net

    root = Path(root)
    cfg_dir = root / "stable-diffusion-v1-5" / "unet"
    cfg_dir.mkdir(parents=True, exist_ok=True)
    (cfg_dir / "config.json").write_text(json.dumps(TINY_UNET_CONFIG, indent=2))
    out = {}
    for i, v in enumerate(versions):
        torch.manual_seed(seed + i)
        net = build_hallo_net(dict(TINY_UNET_CONFIG))
        # Random init leaves the zero-initialised output convs at zero in some blocks; give every
        # parameter a small random value so the whole graph is exercised.
        with torch.no_grad():
            for name, p in net.named_parameters():
                if p.ndim >= 1 and float(p.abs().max()) == 0.0:
                    p.normal_(0.0, 0.02)
        (root / v).mkdir(parents=True, exist_ok=True)
        path = root / v / "net.pth"
        torch.save(net.state_dict(), path)
        out[v] = path
    return out


def write_tiny_vae(root: PathLike, seed: int = 0) -> Path:
    """diffusers AutoencoderKL with the sd-vae layout (8x, 4 latent channels), tiny channels."""
    from .tiny_engine import build_tiny_vae

    folder = Path(root) / "sd-vae-ft-mse"
    build_tiny_vae(seed=seed).save_pretrained(str(folder), safe_serialization=True)
    return folder


def write_tiny_wav2vec(root: PathLike, seed: int = 0) -> Path:
    """wav2vec2 with base-960h's output shape (12 layers x 768) and tiny internals."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    folder = Path(root) / "wav2vec" / "wav2vec2-base-960h"
    folder.mkdir(parents=True, exist_ok=True)
    cfg = Wav2Vec2Config(
        hidden_size=768, num_hidden_layers=12, num_attention_heads=2, intermediate_size=32,
        conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=16,
        feat_extract_norm="group", do_stable_layer_norm=False, mask_time_prob=0.0,
    )
    torch.manual_seed(seed)
    Wav2Vec2Model(cfg).eval().save_pretrained(str(folder), safe_serialization=True)
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "do_normalize": True, "feature_extractor_type": "Wav2Vec2FeatureExtractor", "feature_size": 1,
        "padding_side": "right", "padding_value": 0.0, "return_attention_mask": False, "sampling_rate": 16000,
    }, indent=2))
    return folder


def _scrfd_constant(path: Path, size: int = 64, faces=None) -> None:
    """An SCRFD-shaped ONNX graph (9 outputs: scores, boxes, key points for strides 8/16/32, 2 anchors)
    that reports the same faces whatever the input: one in the middle of the (letterboxed) image, or
    ``faces``, boxes (x0, y0, x1, y1) given as fractions of the letterboxed square canvas (a 2:1 photo
    fills its top half), each decoded from its own stride-8 anchor."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, outputs = [], [], []
    inp = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, size, size])
    nodes.append(helper.make_node("ReduceMean", ["input.1"], ["mean"], keepdims=0))
    inits.append(numpy_helper.from_array(np.array(0.0, np.float32), "zero"))
    nodes.append(helper.make_node("Mul", ["mean", "zero"], ["z"]))
    strides = (8, 16, 32)
    consts = {}
    for s in strides:
        n = (size // s) ** 2 * 2
        consts[("score", s)] = np.zeros((n, 1), np.float32)
        consts[("bbox", s)] = np.zeros((n, 4), np.float32)
        consts[("kps", s)] = np.zeros((n, 10), np.float32)
    pts = np.array([[-0.25, -0.15], [0.25, -0.15], [0.0, 0.05], [-0.2, 0.25], [0.2, 0.25]], np.float32)
    if faces is None:
        s = 32  # one anchor at the cell whose origin is the image centre
        cells = size // s
        cx = cy = size // (2 * s)
        idx = (cy * cells + cx) * 2
        consts[("score", s)][idx, 0] = 0.95
        half = size * 0.3 / s
        consts[("bbox", s)][idx] = [half, half, half, half]
        consts[("kps", s)][idx] = (pts * size * 0.6 / s).reshape(-1)
    else:
        s = 8
        cells = size // s
        used = set()
        for x0, y0, x1, y1 in faces:
            # the anchor at the cell origin nearest the box centre; distances may reach past it
            cx, cy = (x0 + x1) / 2 * size, (y0 + y1) / 2 * size
            gx, gy = min(int(round(cx / s)), cells - 1), min(int(round(cy / s)), cells - 1)
            idx = (gy * cells + gx) * 2
            if idx in used:
                idx += 1  # the cell's second anchor
            assert idx not in used, "two faces on one anchor cell: move them apart"
            used.add(idx)
            ax, ay = gx * s, gy * s
            consts[("score", s)][idx, 0] = 0.95
            consts[("bbox", s)][idx] = [(ax - x0 * size) / s, (ay - y0 * size) / s,
                                       (x1 * size - ax) / s, (y1 * size - ay) / s]
            w = (x1 - x0) * size
            consts[("kps", s)][idx] = ((pts * w + [cx - ax, cy - ay]) / s).reshape(-1)
    for kind in ("score", "bbox", "kps"):
        for st in strides:
            name = f"{kind}_{st}"
            arr = consts[(kind, st)]
            inits.append(numpy_helper.from_array(arr, name + "_c"))
            nodes.append(helper.make_node("Add", ["z", name + "_c"], [name]))
            outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(arr.shape)))
    graph = helper.make_graph(nodes, "tiny_scrfd", [inp], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _arcface_tiny(path: Path, seed: int = 0) -> None:
    """An ArcFace-shaped ONNX graph: [1,3,112,112] -> [1,512] through a random conv + pooling + linear."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.normal(0, 0.1, (8, 3, 8, 8)).astype(np.float32), "conv_w")
    fc = numpy_helper.from_array(rng.normal(0, 0.5, (8, 512)).astype(np.float32), "fc_w")
    nodes = [
        helper.make_node("Conv", ["input.1", "conv_w"], ["c"], strides=[8, 8]),
        helper.make_node("GlobalAveragePool", ["c"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("MatMul", ["f", "fc_w"], ["683"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny_arcface", [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, 112, 112])],
        [helper.make_tensor_value_info("683", TensorProto.FLOAT, [1, 512])], [w, fc])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


def write_tiny_face_models(root: PathLike, seed: int = 0, faces=None) -> Path:
    """face_analysis/models with tiny SCRFD and ArcFace graphs (no landmarker .task: mediapipe's
    legacy FaceMesh supplies the landmarks). ``faces``: what the SCRFD reports (see _scrfd_constant)."""
    folder = Path(root) / "face_analysis" / "models"
    folder.mkdir(parents=True, exist_ok=True)
    _scrfd_constant(folder / "scrfd_10g_bnkps.onnx", faces=faces)
    _arcface_tiny(folder / "glintr100.onnx", seed)
    return folder


def write_upscaler_models(root: PathLike, upscale_models_dir: PathLike, seed: int = 0) -> dict:
    """The temporal upscaler's files. The official loaders build the full-size networks, so these are
    full size with random weights (about 650 MB); the face detector is made to find no face (class-head
    bias -100), so a run takes the face-less pass-through path and stays fast on a CPU."""
    from hallo_core.models.upscaler import ParseNet, RetinaFace, RRDBNet, TemporalCodeFormer

    root, up_dir = Path(root), Path(upscale_models_dir)
    (root / "hallo2").mkdir(parents=True, exist_ok=True)
    (root / "facelib").mkdir(parents=True, exist_ok=True)
    up_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    out = {"net_g": root / "hallo2" / "net_g.pth", "detector": root / "facelib" / "detection_Resnet50_Final.pth",
           "parser": root / "facelib" / "parsing_parsenet.pth", "bg": up_dir / "RealESRGAN_x2plus.pth"}
    sd = TemporalCodeFormer().state_dict()
    torch.save({"params_ema": sd}, out["net_g"])
    del sd
    det = RetinaFace()
    with torch.no_grad():
        for head in det.ClassHead:
            head.conv1x1.weight.zero_()
            head.conv1x1.bias.copy_(torch.tensor([100.0, -100.0]).repeat(head.conv1x1.bias.numel() // 2))
    torch.save({"module." + k: v for k, v in det.state_dict().items()}, out["detector"])
    torch.save(ParseNet().state_dict(), out["parser"])
    torch.save(RRDBNet(scale=2, num_feat=8, num_block=1, num_grow_ch=32).state_dict(), out["bg"])
    return out


def build_models_dir(root: PathLike, seed: int = 0, faces=None) -> Path:
    """Every tiny model the Hallo / Hallo2 example workflows need, in the official layout (``faces``:
    what the tiny SCRFD reports, see _scrfd_constant)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    write_tiny_hallo(root, seed)
    write_tiny_vae(root, seed)
    write_tiny_wav2vec(root, seed)
    write_tiny_face_models(root, seed, faces=faces)
    return root
