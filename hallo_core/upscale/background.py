"""Background upscaling: a neural x2 pass, then Lanczos to the target factor (as Hallo2).

The neural part is any callable ``upscale_x2(bgr_uint8 [H, W, 3]) -> bgr_uint8`` (normally
RealESRGAN x2plus, i.e. ``RRDBNet`` with tiled inference, but ComfyUI passes core's
``UPSCALE_MODEL`` through :func:`tensor_upscaler`).  Whatever size it returns, the result is
resized with ``INTER_LANCZOS4`` to ``(int(w * scale), int(h * scale))`` like upstream's
``RealESRGANer.enhance(img, outscale=scale)``.
"""

from __future__ import annotations

from typing import Callable, Optional

import cv2
import numpy as np
import torch

from ..models.upscaler.rrdbnet import enhance

Upscaler = Callable[[np.ndarray], np.ndarray]


def upscale_background(img: np.ndarray, upscale_x2: Optional[Upscaler], scale: float) -> np.ndarray:
    """``img`` (BGR uint8) -> ``scale`` times larger BGR uint8.

    ``upscale_x2=None`` is a fast non-neural fallback (Lanczos only); upstream has no such
    mode (it raises), it exists for previews and tests.
    """
    h, w = img.shape[:2]
    target = (int(w * scale), int(h * scale))
    up = img if upscale_x2 is None else upscale_x2(img)
    if (up.shape[1], up.shape[0]) != target:
        up = cv2.resize(up, target, interpolation=cv2.INTER_LANCZOS4)
    return up


def tensor_upscaler(model: Callable[[torch.Tensor], torch.Tensor], device=None, dtype=None) -> Upscaler:
    """Wrap an RGB float model ``[1, 3, H, W] in [0, 1] -> [1, 3, sH, sW]`` (spandrel
    ``ImageModelDescriptor``, an ``RRDBNet``...) as a BGR uint8 upscaler, with
    RealESRGANer's value handling: /255, clamp to [0, 1], *255 and round.  No tiling: the
    caller's model is expected to tile itself if needed (ComfyUI's node does).
    """

    def run(img: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(img[:, :, ::-1].transpose(2, 0, 1))).float().div(255.0)
        x = x.unsqueeze(0)
        if device is not None or dtype is not None:
            x = x.to(device=device, dtype=dtype)
        with torch.no_grad():
            y = model(x)
        y = y.squeeze(0).float().cpu().clamp_(0, 1).numpy()
        return (y[[2, 1, 0]].transpose(1, 2, 0) * 255.0).round().astype(np.uint8)

    return run


def rrdb_upscaler(model: torch.nn.Module, tile: int = 400, tile_pad: int = 40) -> Upscaler:
    """RealESRGANer-style tiled x2 (``RRDBNet(scale=2)``) as a BGR uint8 upscaler. The model
    runs in its own device/dtype (``.half()`` it for fp16, as upstream on CUDA)."""
    scale = int(getattr(model, "scale", 2))

    def run(img: np.ndarray) -> np.ndarray:
        rgb = torch.from_numpy(np.ascontiguousarray(img[:, :, ::-1]))
        out = enhance(model, rgb, scale=scale, tile=tile, tile_pad=tile_pad)
        return np.ascontiguousarray(out.numpy()[:, :, ::-1])

    return run
