"""UNet architecture config: SD1.5 built in, or read from ``stable-diffusion-v1-5/unet/config.json``.

Only the SD1.5 UNet *config* decides the architecture of both Hallo UNets; the weights all
come from net.pth. Hallo's own additions (motion modules, hierarchical audio modules,
per-frame GroupNorm) are fixed constants of the released model, not user settings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Union

# Values of the official stable-diffusion-v1-5/unet/config.json that matter here.
SD15_UNET_CONFIG: dict = {
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": [
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": [
        "UpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
    ],
}

# Hallo constants (configs/inference/default.yaml, unet_additional_kwargs).
MOTION_HEADS = 8
MOTION_PE_MAX_LEN = 32
MOTION_NORM_GROUPS = 32  # the temporal transformer's own GroupNorm, not the UNet's
AUDIO_ATTENTION_DIM = 768
AUDIO_TOKENS = 32

_SUPPORTED = {
    "down_block_types": (["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"]),
    "up_block_types": (["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3),
}


def load_unet_config(path_or_dir: Optional[Union[str, Path]] = None) -> dict:
    """Return the UNet config as a dict with every key of ``SD15_UNET_CONFIG``.

    ``path_or_dir`` may be a ``config.json`` file, a ``unet/`` folder, or a
    ``stable-diffusion-v1-5`` folder holding ``unet/config.json``; None gives SD1.5.
    Keys missing from the file fall back to the SD1.5 values. Only the SD1.5 block
    layout (3 cross-attention levels + 1 plain level) is supported, as in Hallo.
    """
    cfg = dict(SD15_UNET_CONFIG)
    if path_or_dir is not None:
        p = Path(path_or_dir)
        if p.is_dir():
            p = p / "config.json" if (p / "config.json").is_file() else p / "unet" / "config.json"
        if not p.is_file():
            raise FileNotFoundError(f"UNet config not found: {p}")
        with open(p, "r", encoding="utf-8") as f:
            user = json.load(f)
        cfg.update({k: v for k, v in user.items() if k in SD15_UNET_CONFIG})
    return validate_unet_config(cfg)


def validate_unet_config(cfg: dict) -> dict:
    """Check that a config describes an SD1.5-shaped UNet Hallo can be built from."""
    cfg = {**SD15_UNET_CONFIG, **cfg}
    for key, want in _SUPPORTED.items():
        if list(cfg[key]) != want:
            raise ValueError(f"unsupported UNet config: {key}={cfg[key]!r} (Hallo needs {want!r})")
    heads = cfg["attention_head_dim"]
    if not isinstance(heads, int):
        if len(set(heads)) != 1:
            raise ValueError("per-level attention_head_dim is not supported")
        cfg["attention_head_dim"] = int(heads[0])
    chans = list(cfg["block_out_channels"])
    if len(chans) != 4:
        raise ValueError("block_out_channels must have 4 entries")
    for c in chans:
        if c % cfg["norm_num_groups"] or c % MOTION_NORM_GROUPS or c % cfg["attention_head_dim"]:
            raise ValueError(
                f"block channel {c} must be divisible by norm_num_groups, {MOTION_NORM_GROUPS} "
                "(motion-module GroupNorm) and attention_head_dim"
            )
    if cfg.get("center_input_sample"):
        raise ValueError("center_input_sample=True is not supported")
    cfg["block_out_channels"] = chans
    return cfg
