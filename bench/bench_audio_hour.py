"""Benchmark: embed long synthetic speech-like audio on CPU and report time and peak RSS.

Uses a random-init wav2vec2-base config (same compute and memory as the real model; no
weights are downloaded). Prints the peak resident set size of the whole process.

    python bench/bench_audio_hour.py --minutes 60 --dtype float16
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from hallo_core.audio import HalloWav2Vec, embed_audio  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def speech_like(seconds: float, sr: int = 16000, seed: int = 0) -> np.ndarray:
    """Voiced harmonics with a wandering pitch, syllable-rate envelope and noise bursts."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    out = np.empty(n, np.float32)
    block = 10 * sr
    phase = 0.0
    for s in range(0, n, block):
        m = min(block, n - s)
        t = (np.arange(m) + s) / sr
        f0 = 140 + 40 * np.sin(2 * np.pi * 0.3 * t) + 15 * np.sin(2 * np.pi * 2.1 * t)
        ph = phase + 2 * np.pi * np.cumsum(f0) / sr
        phase = float(ph[-1])
        voiced = sum(np.sin(k * ph) / k for k in range(1, 12))
        env = np.clip(np.sin(2 * np.pi * 4.0 * t + np.sin(2 * np.pi * 0.7 * t)), 0, None) ** 2
        noise = rng.standard_normal(m) * (env < 0.05) * 0.05
        out[s : s + m] = (0.3 * voiced * env + noise).astype(np.float32)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--dtype", choices=["float32", "float16"], default="float16")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from transformers import Wav2Vec2Config

    torch.manual_seed(0)
    encoder = HalloWav2Vec.from_config(Wav2Vec2Config())  # wav2vec2-base shapes
    wave = speech_like(args.minutes * 60)
    print(f"audio: {args.minutes:g} min at 16 kHz ({wave.nbytes / 2**20:.0f} MiB), "
          f"rss before {rss_mb():.0f} MiB", flush=True)
    t0 = time.perf_counter()
    last = [t0]

    def progress(done: int, total: int) -> None:
        now = time.perf_counter()
        print(f"  segment {done}/{total}: {now - last[0]:.1f} s, rss {rss_mb():.0f} MiB, "
              f"peak {peak_rss_mb():.0f} MiB", flush=True)
        last[0] = now

    feats = embed_audio((wave, 16000), encoder, feature_dtype=getattr(torch, args.dtype), progress=progress, cache=None)
    dt = time.perf_counter() - t0
    fbytes = feats.features.numel() * feats.features.element_size()
    print(f"features {tuple(feats.features.shape)} {args.dtype} = {fbytes / 2**20:.0f} MiB, "
          f"num_frames {feats.num_frames}")
    print(f"time {dt:.1f} s ({dt / (args.minutes * 60):.3f} s per audio second, {args.threads} threads)")
    peak = peak_rss_mb()
    print(f"peak RSS {peak:.0f} MiB")
    if args.minutes < 60:
        # Everything but the features and the input waveform is per segment, so a shorter
        # run extrapolates by adding the extra features and waveform of a full hour.
        t_hour = -(-90000 // 16) * 16
        per_frame = feats.features[0].numel() * feats.features.element_size()
        extra = (t_hour - feats.features.shape[0]) * per_frame + (3600 * 16000 - wave.size) * 4
        print(f"EXTRAPOLATED (not measured) peak RSS for 60 min: {peak + extra / 2**20:.0f} MiB "
              f"(+{extra / 2**20:.0f} MiB of features and waveform)")


if __name__ == "__main__":
    main()
