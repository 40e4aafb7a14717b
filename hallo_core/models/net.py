"""``HalloNet``: the five modules of the official net.pth under their checkpoint prefixes."""

from __future__ import annotations

from typing import Optional, Union

import torch
from torch import nn

from .config import load_unet_config, validate_unet_config
from .denoising_unet import DenoisingUNet
from .projections import AudioProj, FaceLocator, ImageProj
from .reference_unet import ReferenceUNet


class HalloNet(nn.Module):
    """reference_unet, denoising_unet, face_locator, imageproj, audioproj (state-dict prefixes of net.pth)."""

    def __init__(self, unet_config: Optional[dict] = None, operations=None, device=None, dtype=None):
        super().__init__()
        cfg = validate_unet_config(unet_config or load_unet_config())
        kw = {"operations": operations, "device": device, "dtype": dtype}
        self.unet_config = cfg
        self.reference_unet = ReferenceUNet(cfg, **kw)
        self.denoising_unet = DenoisingUNet(cfg, **kw)
        self.face_locator = FaceLocator(out_channels=cfg["block_out_channels"][0], **kw)
        self.imageproj = ImageProj(cross_attention_dim=cfg["cross_attention_dim"], **kw)
        self.audioproj = AudioProj(**kw)
        # How the reference UNet is brought to the compute device for a pass (see
        # pipeline.reference_cache.Placement). None: hallo_core places it itself. A host whose
        # model manager owns the weights (ComfyUI) sets its own, so nothing moves behind its back.
        self.placement = None

    def set_compute_dtype(self, dtype: Optional[torch.dtype]) -> None:
        """Compute in ``dtype`` although the weights are stored in another one.

        For layers that cast each weight to the input's dtype (ComfyUI's manual-cast ops, used when
        the device cannot compute in the storage dtype): the modules cast their inputs to this
        dtype instead of the weights'. None restores the weights' dtype.
        """
        for m in (self.reference_unet, self.denoising_unet, self.face_locator, self.imageproj, self.audioproj):
            m.compute_dtype = dtype


def build_hallo_net(
    unet_config: Union[None, dict, str] = None,
    operations=None,
    device: Optional[Union[str, torch.device]] = None,
    dtype: Optional[torch.dtype] = None,
) -> HalloNet:
    """Build the Hallo network from a UNet config (dict, path to config.json / its folder, or None = SD1.5).

    Weights are left as the layers initialise them (random for torch.nn); load net.pth with
    ``hallo_core.io.checkpoints.load_hallo_weights``. ``device="meta"`` builds without memory.
    """
    cfg = unet_config if isinstance(unet_config, dict) else load_unet_config(unet_config)
    return HalloNet(cfg, operations=operations, device=device, dtype=dtype)
