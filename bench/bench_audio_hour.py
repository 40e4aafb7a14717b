"""Benchmark: embed long synthetic speech-like audio on CPU and report time and peak RSS.

Uses a random-init wav2vec2-base config (same compute and memory as the real model; no
weights are downloaded). Prints the peak resident set size of the whole process.

    python bench/bench_audio_hour.py                 # one hour, 44.1 kHz stereo WAV file
    python bench/bench_audio_hour.py --minutes 3 --input array --dtype float32
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


def speech_like(seconds: float, sr: int = 16000, seed: int = 0, start: float = 0.0) -> np.ndarray:
    """Voiced harmonics with a wandering pitch, syllable-rate envelope and noise bursts."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    out = np.empty(n, np.float32)
    block = 10 * sr
    phase = 0.0
    for s in range(0, n, block):
        m = min(block, n - s)
        t = start + (np.arange(m) + s) / sr
        f0 = 140 + 40 * np.sin(2 * np.pi * 0.3 * t) + 15 * np.sin(2 * np.pi * 2.1 * t)
        ph = phase + 2 * np.pi * np.cumsum(f0) / sr
        phase = float(ph[-1])
        voiced = sum(np.sin(k * ph) / k for k in range(1, 12))
        env = np.clip(np.sin(2 * np.pi * 4.0 * t + np.sin(2 * np.pi * 0.7 * t)), 0, None) ** 2
        noise = rng.standard_normal(m) * (env < 0.05) * 0.05
        out[s : s + m] = (0.3 * voiced * env + noise).astype(np.float32)
    return out


def write_speech_wav(path: str, seconds: float, sr: int, channels: int) -> None:
    """Write the synthetic speech as 16-bit PCM, 10 s at a time (the whole hour never sits in RAM)."""
    import soundfile as sf

    with sf.SoundFile(path, "w", samplerate=sr, channels=channels, subtype="PCM_16", format="WAV") as f:
        block = 600.0
        done = 0.0
        seed = 0
        while done < seconds:
            n = min(block, seconds - done)
            mono = speech_like(n, sr, seed=seed, start=done)
            seed += 1
            if channels == 2:
                right = 0.9 * mono + 0.01 * np.random.default_rng(seed).standard_normal(mono.size).astype(np.float32)
                f.write(np.stack([mono, right], axis=1))
            else:
                f.write(mono)
            done += n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--dtype", choices=["auto", "float32", "float16"], default="auto",
                    help="feature storage; auto is the library default (float16 beyond 10 min)")
    ap.add_argument("--input", choices=["file", "array"], default="file",
                    help="file: a 44.1 kHz stereo 16-bit WAV on disk, streamed per segment (the CLI route); "
                         "array: a 16 kHz mono array held in memory")
    ap.add_argument("--wav", default=None, help="where to write (or reuse) the WAV for --input file")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from transformers import Wav2Vec2Config

    seconds = args.minutes * 60
    if args.input == "file":
        wav = args.wav or os.path.join("/tmp", f"hallo_bench_speech_{args.minutes:g}min_44k1_stereo.wav")
        if not os.path.exists(wav):
            # In a child process, so that writing the file does not count in this one's peak RSS.
            import subprocess

            t = time.perf_counter()
            code = ("import sys; sys.path.insert(0, sys.argv[1]); import bench_audio_hour as b; "
                    "b.write_speech_wav(sys.argv[2] + '.part', float(sys.argv[3]), 44100, 2)")
            subprocess.run([sys.executable, "-c", code, os.path.dirname(os.path.abspath(__file__)), wav,
                            str(seconds)], check=True)
            os.replace(wav + ".part", wav)
            print(f"wrote {wav} ({os.path.getsize(wav) / 2**20:.0f} MiB) in {time.perf_counter() - t:.0f} s")
        audio = wav
        desc = f"{args.minutes:g} min, 44.1 kHz stereo PCM_16 file ({os.path.getsize(wav) / 2**20:.0f} MiB on disk)"
    else:
        audio = (speech_like(seconds), 16000)
        desc = f"{args.minutes:g} min, 16 kHz mono float32 array ({audio[0].nbytes / 2**20:.0f} MiB)"

    torch.manual_seed(0)
    encoder = HalloWav2Vec.from_config(Wav2Vec2Config())  # wav2vec2-base shapes
    print(f"audio: {desc}; rss before {rss_mb():.0f} MiB, peak so far {peak_rss_mb():.0f} MiB", flush=True)
    t0 = time.perf_counter()
    last = [t0]

    def progress(done: int, total: int) -> None:
        now = time.perf_counter()
        print(f"  segment {done}/{total}: {now - last[0]:.1f} s, rss {rss_mb():.0f} MiB, "
              f"peak {peak_rss_mb():.0f} MiB", flush=True)
        last[0] = now

    dtype = None if args.dtype == "auto" else getattr(torch, args.dtype)
    feats = embed_audio(audio, encoder, segment_seconds=60.0, feature_dtype=dtype, progress=progress, cache=None)
    dt = time.perf_counter() - t0
    peak = peak_rss_mb()  # read before any check below allocates
    fbytes = feats.features.numel() * feats.features.element_size()
    # isfinite over the whole fp16 tensor would allocate gigabytes; check a clip at a time.
    finite = all(bool(torch.isfinite(feats.features[a : a + 16]).all()) for a in range(0, feats.features.shape[0], 16))
    print(f"features {tuple(feats.features.shape)} {feats.features.dtype} = {fbytes / 2**20:.0f} MiB, "
          f"num_frames {feats.num_frames}, finite {finite}")
    print(f"time {dt:.1f} s ({dt / seconds:.3f} s per audio second, {args.threads} threads)")
    print(f"peak RSS {peak:.0f} MiB (whole process, measured at the end of embed_audio)")
    if args.minutes < 60:
        # Everything but the features is per segment, so a shorter run extrapolates by adding
        # the extra features of a full hour (and, for an in-memory array, its extra samples).
        t_hour = -(-90000 // 16) * 16
        per_frame = feats.features[0].numel() * feats.features.element_size()
        extra = (t_hour - feats.features.shape[0]) * per_frame
        if args.input == "array":
            extra += (3600 * 16000 - audio[0].size) * 4
        print(f"EXTRAPOLATED (not measured) peak RSS for 60 min: {peak + extra / 2**20:.0f} MiB "
              f"(+{extra / 2**20:.0f} MiB)")


if __name__ == "__main__":
    main()
