"""Tiny Hallo model configs, seeded random weights and inputs for the model tests.

``randomize`` and ``tiny_inputs`` follow the same procedure (sorted state-dict keys, seeds,
draw order) as the script that produced tests/data/upstream_hallo_tiny.pt with the upstream
code, so the stored upstream outputs can be compared without storing weights.
"""

from __future__ import annotations

import torch

from hallo_core.models import DenoisingUNet, FaceLocator, ImageProj, ReferenceUNet
from hallo_core.models.config import load_unet_config

TINY = dict(load_unet_config(), block_out_channels=[32, 32, 32, 32], cross_attention_dim=64)
FRAMES, LATENT = 4, 8


class TinyParts(torch.nn.Module):
    """The HalloNet modules except AudioProj (fixed 36M params), under the net.pth prefixes."""

    def __init__(self, cfg=TINY):
        super().__init__()
        self.reference_unet = ReferenceUNet(cfg)
        self.denoising_unet = DenoisingUNet(cfg)
        self.face_locator = FaceLocator(out_channels=cfg["block_out_channels"][0])
        self.imageproj = ImageProj(cross_attention_dim=cfg["cross_attention_dim"])


@torch.no_grad()
def randomize(module: torch.nn.Module, seed: int = 20240704) -> None:
    """Every parameter random (zero-initialised convs included), in sorted-key order."""
    g = torch.Generator().manual_seed(seed)
    params = module.state_dict(keep_vars=True)
    for name in sorted(params):
        if name.endswith("pos_encoder.pe"):
            continue
        p = params[name]
        if p.ndim >= 2:
            p.copy_(torch.randn(p.shape, generator=g) / p[0].numel() ** 0.5)
        elif name.rsplit(".", 2)[-2].startswith(("norm", "ff_norm")) or ".norms." in name:
            p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
        else:
            p.copy_(0.2 * torch.randn(p.shape, generator=g))


def tiny_inputs(frames: int = FRAMES, latent: int = LATENT, seed: int = 7) -> dict:
    gi = torch.Generator().manual_seed(seed)
    emb = torch.randn(1, 512, generator=gi) * 5
    ref_latents = torch.randn(3, 4, latent, latent, generator=gi)
    latents = torch.randn(1, 4, frames, latent, latent, generator=gi)
    face_region = (torch.rand(1, 3, latent * 8, latent * 8, generator=gi) > 0.5).float()
    tok = torch.randn(1, frames, 32, 768, generator=gi)
    levels = [latent * latent // (4 ** lv) for lv in range(4)]
    masks = [[torch.rand(1, n, generator=gi) for n in levels] for _ in range(3)]
    return dict(emb=emb, ref_latents=ref_latents, latents=latents, face_region=face_region, tok=tok,
                masks=masks, t=torch.tensor(499), motion_scale=(0.7, 1.3, 1.9))


@torch.no_grad()
def run_clip(parts: TinyParts, inp: dict, fast: bool = False, **override):
    """One upstream-style CFG denoiser call; returns (v, pieces) with the pieces used."""
    frames = inp["latents"].shape[2]
    emb = inp["emb"]
    enc = torch.cat([parts.imageproj(torch.zeros_like(emb)), parts.imageproj(emb)])
    banks = parts.reference_unet(inp["ref_latents"].repeat(2, 1, 1, 1), 0, enc)
    feat = parts.face_locator(inp["face_region"].unsqueeze(2).repeat(1, 1, frames, 1, 1))
    kw = dict(
        face_features=torch.cat([torch.zeros_like(feat), feat]),
        full_masks=[torch.cat([m.repeat(frames, 1)] * 2) for m in inp["masks"][0]],
        face_masks=[torch.cat([m.repeat(frames, 1)] * 2) for m in inp["masks"][1]],
        lip_masks=[torch.cat([m.repeat(frames, 1)] * 2) for m in inp["masks"][2]],
        audio_tokens=torch.cat([torch.zeros_like(inp["tok"]), inp["tok"]]),
        motion_scale=inp["motion_scale"],
    )
    kw.update(override)
    reference = kw.pop("reference", banks)
    dn = parts.denoising_unet
    if fast and isinstance(reference, dict):
        reference = dn.prepare_reference(reference, batch=2)
    v = dn(torch.cat([inp["latents"]] * 2), inp["t"], enc, reference=reference, **kw)
    return v, dict(enc=enc, banks=banks, feat=feat, **kw)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()
