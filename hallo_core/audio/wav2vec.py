"""wav2vec2 with Hallo's interpolated forward.

Hallo does not run wav2vec2 at its native 50 Hz: the CNN features are linearly resampled
(align_corners=True) to the video frame count *before* the feature projection and the
transformer, and the outputs of transformer layers 1..N are stacked per frame. The modules
are transformers' own Wav2Vec2 building blocks, so module names (and therefore checkpoint
keys) are those of ``Wav2Vec2Model``.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from pathlib import Path
from typing import Dict, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..assets.layout import rel_path
from ..errors import ModelMissingError, WeightsError

log = logging.getLogger(__name__)

# Smallest input the 7-layer wav2vec2 CNN accepts (receptive field of one output frame).
MIN_CNN_SAMPLES = 400

_POS_CONV = "encoder.pos_conv_embed.conv."
# Old torch weight_norm spelling -> torch.nn.utils.parametrizations spelling.
_WN_RENAMES = {
    _POS_CONV + "weight_g": _POS_CONV + "parametrizations.weight.original0",
    _POS_CONV + "weight_v": _POS_CONV + "parametrizations.weight.original1",
}
# Heads and pretraining-only parts that a Wav2Vec2ForCTC / ForPreTraining file may carry.
_IGNORED_PREFIXES = ("lm_head.", "quantizer.", "project_q.", "project_hid.", "dropout_features")


def _conv_chunked(conv: nn.Conv1d, x: torch.Tensor, post, chunk: int) -> torch.Tensor:
    """``post(conv(x))`` computed over slices of the output positions.

    Each output position depends only on its own input window, so slicing is exact; it keeps
    the convolution's workspace to one slice (a 60 s segment otherwise needs ~1 GB here).
    """
    k, s = conv.kernel_size[0], conv.stride[0]
    if conv.padding not in ((0,), 0) or conv.dilation != (1,):
        return post(conv(x))
    length = (x.shape[-1] - k) // s + 1
    out = x.new_empty(x.shape[0], conv.out_channels, length)
    for a in range(0, length, chunk):
        b = min(a + chunk, length)
        out[..., a:b] = post(conv(x[..., a * s : (b - 1) * s + k]))
    return out


def _channel_stats(h: torch.Tensor, chunk: int) -> tuple:
    """Per-channel mean and biased variance over time, two passes in float64, in slices
    (torch.var_mean would materialise a full-size temporary)."""
    n = h.shape[-1]
    total = torch.zeros(h.shape[:-1] + (1,), dtype=torch.float64, device=h.device)
    for a in range(0, n, chunk):
        total += h[..., a : a + chunk].sum(dim=-1, keepdim=True, dtype=torch.float64)
    mean = total / n
    sq = torch.zeros_like(total)
    for a in range(0, n, chunk):
        sq += (h[..., a : a + chunk].double() - mean).square().sum(dim=-1, keepdim=True)
    return mean.to(h.dtype), (sq / n).to(h.dtype)


def normalize_waveform(wave: np.ndarray) -> np.ndarray:
    """Zero mean / unit variance over the whole array, as Wav2Vec2FeatureExtractor does.

    The 1e-7 inside the square root is the feature extractor's; it keeps silence finite
    (silence maps to exact zeros).
    """
    x = np.asarray(wave, dtype=np.float32)
    # float64 statistics: a 60 s segment is ~1e6 samples and float32 sums lose digits.
    mean = x.mean(dtype=np.float64)
    var = x.var(dtype=np.float64)
    return ((x - mean) / np.sqrt(var + 1e-7)).astype(np.float32)


def _convert_keys(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Strip the ``wav2vec2.`` prefix of CTC checkpoints, drop heads, unify weight-norm keys."""
    has_prefix = any(k.startswith("wav2vec2.") for k in state)
    out = {}
    for key, value in state.items():
        if has_prefix:
            if not key.startswith("wav2vec2."):
                if key.startswith(_IGNORED_PREFIXES):
                    continue
                out[key] = value  # left for the unexpected-key check to report
                continue
            key = key[len("wav2vec2."):]
        elif key.startswith(_IGNORED_PREFIXES):
            continue
        out[_WN_RENAMES.get(key, key)] = value
    return out


def _read_state_dict(folder: Path) -> tuple:
    for name in ("model.safetensors", "pytorch_model.bin"):
        path = folder / name
        if path.is_file():
            from ..io.checkpoints import trace_weight_load

            trace_weight_load(path, "wav2vec2 weights")
            if name.endswith(".safetensors"):
                from safetensors.torch import load_file

                return load_file(str(path)), path
            return torch.load(str(path), map_location="cpu", weights_only=True), path
    raise ModelMissingError(f"no wav2vec2 weights in {folder}: expected model.safetensors or pytorch_model.bin",
                            fix=f"download {rel_path('wav2vec')} again (python -m hallo_core download --models MODELS --which wav2vec)", component="wav2vec", path=str(folder))


class HalloWav2Vec(nn.Module):
    """wav2vec2 encoder returning per-video-frame hidden states of every transformer layer.

    ``forward(input_values [1, N], num_frames)`` -> ``[num_frames, num_layers, hidden]``.
    Call :meth:`normalize` first (or use :mod:`hallo_core.audio.embed`), as upstream's
    feature extractor does.
    """

    def __init__(self, config, do_normalize: bool = True, sampling_rate: int = 16000):
        super().__init__()
        from transformers.models.wav2vec2.modeling_wav2vec2 import (
            Wav2Vec2Encoder,
            Wav2Vec2FeatureEncoder,
            Wav2Vec2FeatureProjection,
        )

        if getattr(config, "do_stable_layer_norm", False):
            raise ValueError("only post-LN wav2vec2 (do_stable_layer_norm=False, as in wav2vec2-base) is supported")
        if getattr(config, "add_adapter", False):
            raise ValueError(f"wav2vec2 configs with an adapter are not supported (Hallo uses {rel_path('wav2vec')})")
        if getattr(config, "_attn_implementation", None) in (None, "eager"):
            # The modules are built outside PreTrainedModel, so pick the attention kernel here.
            config._attn_implementation = "sdpa"
        self.config = config
        self.do_normalize = bool(do_normalize)
        self.sampling_rate = int(sampling_rate)
        self.feature_extractor = Wav2Vec2FeatureEncoder(config)
        self.feature_projection = Wav2Vec2FeatureProjection(config)
        self.encoder = Wav2Vec2Encoder(config)
        if config.mask_time_prob > 0.0 or config.mask_feature_prob > 0.0:
            # Present in the checkpoint; only used for SpecAugment during training.
            self.masked_spec_embed = nn.Parameter(torch.zeros(config.hidden_size))
        # Output positions per convolution call in the CNN (memory vs. call overhead).
        self.cnn_chunk = 4096
        # Identifies the weights for the embedding cache.
        self.fingerprint = f"instance-{uuid.uuid4().hex}"
        self.eval()

    @property
    def num_layers(self) -> int:
        return int(self.config.num_hidden_layers)

    @property
    def hidden_size(self) -> int:
        return int(self.config.hidden_size)

    def normalize(self, wave: np.ndarray) -> np.ndarray:
        """Apply the preprocessor config's normalisation (a no-op when do_normalize is false)."""
        if self.do_normalize:
            return normalize_waveform(wave)
        return np.asarray(wave, dtype=np.float32)

    @torch.inference_mode()
    def forward(self, input_values: torch.Tensor, num_frames: int, out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Hallo's forward: CNN -> linear interpolation to ``num_frames`` -> projection -> encoder.

        Args:
            input_values: [1, N] (or [N]) normalised waveform at 16 kHz.
            num_frames: number of output frames (25 fps video frames).
            out: optional [num_frames, num_layers, hidden] tensor (any dtype/device) to write into,
                so long inputs do not need a second copy of the features.
        Returns:
            [num_frames, num_layers, hidden] hidden states of layers 1..num_layers.
        """
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        param = next(self.parameters())
        x = input_values.reshape(1, -1).to(device=param.device, dtype=param.dtype)
        if x.shape[1] < MIN_CNN_SAMPLES:
            # Only reachable without clip padding; upstream would fail inside the CNN.
            x = F.pad(x, (0, MIN_CNN_SAMPLES - x.shape[1]))
        feats = self._cnn(x)  # [1, C, L] at ~50 Hz
        feats = F.interpolate(feats, size=int(num_frames), mode="linear", align_corners=True)
        hidden, _ = self.feature_projection(feats.transpose(1, 2))

        enc = self.encoder
        hidden = hidden + enc.pos_conv_embed(hidden)
        hidden = enc.layer_norm(hidden)
        hidden = enc.dropout(hidden)
        if out is None:
            out = torch.empty(num_frames, self.num_layers, self.hidden_size, dtype=hidden.dtype, device=hidden.device)
        for i, layer in enumerate(enc.layers):
            hidden = layer(hidden, attention_mask=None)
            if isinstance(hidden, tuple):  # older transformers return (hidden_states, ...)
                hidden = hidden[0]
            out[:, i] = hidden[0].to(device=out.device, dtype=out.dtype)
        return out

    def _cnn(self, x: torch.Tensor) -> torch.Tensor:
        """The feature encoder's forward, layer by layer, with bounded temporaries.

        Same math as ``self.feature_extractor(x)``: conv -> (norm) -> activation per layer.
        GroupNorm with one group per channel (wav2vec2-base) is applied in place after the
        whole layer output exists, since its statistics span the full length.
        """
        chunk = self.cnn_chunk
        h = x[:, None]
        for layer in self.feature_extractor.conv_layers:
            norm = getattr(layer, "layer_norm", None)
            act = layer.activation
            if norm is None:
                h = _conv_chunked(layer.conv, h, act, chunk)
            elif isinstance(norm, nn.LayerNorm):  # per-position norm over channels
                def post(y, n=norm, a=act):
                    return a(n(y.transpose(-2, -1)).transpose(-2, -1))

                h = _conv_chunked(layer.conv, h, post, chunk)
            elif isinstance(norm, nn.GroupNorm) and norm.num_groups == norm.num_channels:
                h = _conv_chunked(layer.conv, h, lambda y: y, chunk)
                mean, var = _channel_stats(h, chunk)
                scale = torch.rsqrt(var + norm.eps)
                if norm.affine:
                    scale = scale * norm.weight[None, :, None]
                    shift = norm.bias[None, :, None] - mean * scale
                else:
                    shift = -mean * scale
                for a in range(0, h.shape[-1], chunk):
                    part = h[..., a : a + chunk]
                    part.copy_(act(part * scale + shift))
            else:
                h = layer(h)
        return h

    @classmethod
    def from_config(cls, config, do_normalize: bool = True) -> "HalloWav2Vec":
        """Random-weight model (tests and benchmarks)."""
        return cls(config, do_normalize=do_normalize)

    @classmethod
    def from_pretrained(
        cls,
        folder: Union[str, os.PathLike],
        device: Union[str, torch.device] = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> "HalloWav2Vec":
        """Load an official wav2vec2 folder (config.json, preprocessor_config.json, weights).

        Accepts both weight-norm spellings of the positional conv and fails if any encoder
        weight (in particular that conv) would be left at its random initialisation.
        """
        from transformers import Wav2Vec2Config

        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise ModelMissingError(f"the wav2vec2 folder {folder} has no config.json", fix=f"download {rel_path('wav2vec')} again (python -m hallo_core download --models MODELS --which wav2vec)",
                                    component="wav2vec", path=str(folder / "config.json"))
        config = Wav2Vec2Config.from_pretrained(str(folder), local_files_only=True)
        do_normalize, sampling_rate = True, 16000
        pre = folder / "preprocessor_config.json"
        if pre.is_file():
            with open(pre, encoding="utf-8") as f:
                pre_cfg = json.load(f)
            do_normalize = bool(pre_cfg.get("do_normalize", True))
            sampling_rate = int(pre_cfg.get("sampling_rate", 16000))
        else:
            log.warning("%s has no preprocessor_config.json; assuming do_normalize=True (as %s)", folder, rel_path("wav2vec"))
        if sampling_rate != 16000:
            raise WeightsError(f"the wav2vec2 preprocessor expects {sampling_rate} Hz; Hallo's features need a 16 kHz "
                               "model", fix=f"download {rel_path('wav2vec')} again (python -m hallo_core download --models MODELS --which wav2vec)", path=str(pre))

        raw, weights_path = _read_state_dict(folder)
        state = _convert_keys(raw)
        model = cls(config, do_normalize=do_normalize, sampling_rate=sampling_rate)
        own = set(model.state_dict())
        missing = sorted(own - set(state) - {"masked_spec_embed"})
        unexpected = sorted(set(state) - own)
        if missing or unexpected:
            raise WeightsError(
                f"wav2vec2 checkpoint {weights_path} does not match the model: "
                f"missing {missing[:8]}{'...' if len(missing) > 8 else ''}, "
                f"unexpected {unexpected[:8]}{'...' if len(unexpected) > 8 else ''}", fix=f"download {rel_path('wav2vec')} again (python -m hallo_core download --models MODELS --which wav2vec)",
                path=str(weights_path))
        model.load_state_dict(state, strict=False)
        stat = weights_path.stat()
        model.fingerprint = f"{weights_path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}:{do_normalize}"
        return model.to(device=device, dtype=dtype).eval()
