"""The CPU attention kernel alone, at the shapes of the 512 px bench (issue 17's layout levers).

At 512 px about 80 % of a denoising step is ``scaled_dot_product_attention`` (see
``profile_vs_upstream.py``). This script asks whether a different layout or call pattern of
the *same* attention makes that kernel faster, at identical output:

* ``view``: q/k/v as the head-split views of [b, n, h*d] tokens (what both pipelines pass);
* ``contiguous``: the same tensors copied to [b, h, n, d] first (copy time included);
* ``query chunks``: the queries in chunks (the kernel's own block size depends on the query
  length), concatenated;
* ``math``: softmax(q k^T / sqrt(d)) v in chunks of 1024 queries (the unfused formula).

It prints seconds (best of ``--repeats``, process CPU time, 1 thread), the cost per query-key
pair and whether the output equals the ``view`` call bit for bit.

    python bench/bench_attention_kernel.py            # the 64x64-level shapes, widths 64 (head dim 8)
    python bench/bench_attention_kernel.py --dim 320  # SD1.5's width at that level (head dim 40)
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F


def best(fn, repeats: int) -> float:
    fn()
    out = float("inf")
    for _ in range(repeats):
        c = time.process_time()
        fn()
        out = min(out, time.process_time() - c)
    return out


def heads(x: torch.Tensor, h: int) -> torch.Tensor:
    return x.view(x.shape[0], x.shape[1], h, -1).transpose(1, 2)


def math_attention(q, k, v, chunk=1024):
    s = q.shape[-1] ** -0.5
    return torch.cat([torch.softmax((q[:, :, i:i + chunk] * s) @ k.transpose(-1, -2), -1) @ v
                      for i in range(0, q.shape[2], chunk)], 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dim", type=int, default=64, help="channels at the 64x64 level (bench: 64, SD1.5: 320)")
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    c, h = a.dim, a.heads
    # (name, rows, queries, keys): the three big calls per 64x64 layer of the 512 px bench (4 frames, CFG)
    cases = [("spatial, conditional rows (own + reference keys)", 4, 4096, 8192),
             ("spatial, unconditional rows (own keys)", 4, 4096, 4096),
             ("audio block self-attention (all rows)", 8, 4096, 4096)]
    print(f"torch {torch.__version__}, {torch.backends.cpu.get_cpu_capability()}, 1 thread, width {c}, "
          f"{h} heads (head dim {c // h}); seconds are the best of {a.repeats}")
    for name, b, n, m in cases:
        q, k, v = (torch.randn(b, t, c, generator=g) for t in (n, m, m))
        pairs = b * h * n * m
        ref = F.scaled_dot_product_attention(heads(q, h), heads(k, h), heads(v, h))
        variants = {
            "view": lambda: F.scaled_dot_product_attention(heads(q, h), heads(k, h), heads(v, h)),
            "contiguous": lambda: F.scaled_dot_product_attention(
                heads(q, h).contiguous(), heads(k, h).contiguous(), heads(v, h).contiguous()),
            "query chunks of 512": lambda: torch.cat(
                [F.scaled_dot_product_attention(heads(q, h)[:, :, i:i + 512], heads(k, h), heads(v, h))
                 for i in range(0, n, 512)], 2),
            "math (unfused)": lambda: math_attention(heads(q, h), heads(k, h), heads(v, h)),
        }
        print(f"\n{name}: q [{b}, {h}, {n}, {c // h}], k [{b}, {h}, {m}, {c // h}], {pairs / 1e9:.3f}e9 pairs")
        base = None
        for label, fn in variants.items():
            sec = best(fn, a.repeats)
            base = base or sec
            same = torch.equal(fn(), ref)
            print(f"  {label:22s} {sec:7.3f} s  {sec / pairs * 1e9:5.2f} ns/pair  view/this {base / sec:5.2f}x  "
                  f"{'bit-equal' if same else 'max diff %.1e' % (fn() - ref).abs().max().item()}")


if __name__ == "__main__":
    main()
