"""``hallo doctor``'s self-test: the whole generation pipeline on tiny random weights.

It proves the install (torch, diffusers, transformers, PyAV, the sampler and the mp4 writer)
before a 5 GB download, in seconds on a CPU. The configs below are the only tiny-model
scaffolding the engine carries, and only for this purpose. Not run: the face front end
(mediapipe landmarks, SCRFD/ArcFace need real model files, which doctor checks instead); a
centred face box stands in for the landmarks.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Union

import numpy as np

# SD1.5's block layout with small channels; the 768-d cross attention is fixed by the audio and
# image projections of the released model.
UNET = {"block_out_channels": [32, 32, 64, 64], "layers_per_block": 1, "attention_head_dim": 8,
        "norm_num_groups": 32, "cross_attention_dim": 768, "sample_size": 16}
VAE = {"in_channels": 3, "out_channels": 3, "latent_channels": 4,
       "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
       "block_out_channels": [8, 8, 16, 16], "layers_per_block": 1, "norm_num_groups": 4, "sample_size": 64}
# base-960h's output shape (12 layers x 768), tiny internals
WAV2VEC = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 2, "intermediate_size": 32,
           "conv_dim": (16,) * 7, "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 16,
           "feat_extract_norm": "group", "do_stable_layer_norm": False, "mask_time_prob": 0.0}
SIZE, SECONDS, STEPS = 64, 0.8, 2  # 20 frames: two clips, so the clip chaining runs too


def _face(size: int):
    from ..face.masks import face_region, mask_levels, masks_from_boxes, reference_pixels
    from ..types import FaceData
    import torch

    yy, xx = np.mgrid[0:size, 0:size]
    rgb = np.stack([xx * 255 // size, yy * 255 // size, np.full_like(xx, 128)], -1).astype(np.uint8)
    q = size // 4
    ms = masks_from_boxes((q, q, size - q, size - q), (3 * q // 2, 5 * q // 2, 5 * q // 2, 3 * q), size, size)
    return FaceData(pixels=reference_pixels(rgb, size), face_region=face_region(ms.face_mask, size),
                    face_emb=torch.zeros(512), full_masks=mask_levels(ms.full, size),
                    face_masks=mask_levels(ms.face, size), lip_masks=mask_levels(ms.lip, size),
                    face_box=ms.face_box, size=size)


def run_selftest(out: Union[str, Path], device: str = "cpu") -> dict:
    """Generate a short mp4 at ``out``; returns frames, seconds and the path."""
    import torch
    from diffusers import AutoencoderKL
    from transformers import Wav2Vec2Config

    from ..audio import HalloWav2Vec, embed_audio
    from ..io.vae import VaeCodec
    from ..media.video import Mp4Sink
    from ..models import build_hallo_net
    from ..pipeline.generate import GenerationSettings, generate

    t0 = time.perf_counter()
    torch.manual_seed(0)
    net = build_hallo_net(dict(UNET)).to(device).eval().requires_grad_(False)
    with torch.no_grad():  # zero-initialised output convs would make part of the graph a no-op
        for p in net.parameters():
            if float(p.abs().max()) == 0.0:
                p.normal_(0.0, 0.02)
    vae = VaeCodec(AutoencoderKL(**VAE).to(device).eval().requires_grad_(False))
    encoder = HalloWav2Vec(Wav2Vec2Config(**WAV2VEC)).to(device).eval()
    sr = 16000
    t = np.arange(int(SECONDS * sr)) / sr
    wave = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    audio = embed_audio((wave, sr), encoder, cache=None)
    sink = Mp4Sink(out, wave[None], sr)
    result = generate(net, vae, _face(SIZE), audio, GenerationSettings(steps=STEPS), sink=sink)
    return {"path": Path(out), "frames": result.frames_written, "seconds": time.perf_counter() - t0}
