"""One denoising step of upstream's pipeline and of ours under torch.profiler (CPU), operator by operator.

Uses a case written by ``bench_vs_upstream.py`` (``--work``/s<size>/case_<size>.pt). Each side
runs a 2-step clip in its own process and profiles the second denoiser call (the first one
follows the reference pass); then the self-CPU time per operator is printed side by side,
largest difference first. Like every CPU timing on a shared machine, single runs are noisy:
read the big rows.

    python bench/profile_vs_upstream.py --case ~/.cache/hallo-bench/work/s512/case_512.pt
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_vs_upstream as bvu  # noqa: E402

CACHE = bvu.CACHE


def profile_ours(case_path: str, out: str, path: str, extra: dict) -> None:
    from torch.profiler import ProfilerActivity, profile

    import importlib

    # the package re-exports the function under the module's name, so fetch the module itself
    gen = importlib.import_module("hallo_core.pipeline.generate")

    case = torch.load(case_path, weights_only=True)
    case["settings"]["steps"] = 2
    case["num_frames"] = case["settings"]["clip_frames"]
    case["audio_features"] = case["audio_features"][: case["num_frames"]]
    tmp = Path(out).with_suffix(".case.pt")
    torch.save(case, tmp)
    orig_generate = gen.generate

    def generate(net, *a, **k):
        den = net.denoising_unet
        fwd, calls = den.forward, {"n": 0}

        def wrapped(*aa, **kk):
            calls["n"] += 1
            if calls["n"] != 2:
                return fwd(*aa, **kk)
            with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
                res = fwd(*aa, **kk)
            _save(prof, out)
            return res

        den.forward = wrapped
        return orig_generate(net, *a, **k)

    gen.generate = generate  # run_ours imports generate when called, so it picks this one up
    bvu.run_ours(str(tmp), str(Path(out).with_suffix(".frames.pt")), "float32", 1, path, extra)


def _save(prof, out: str) -> None:
    ka = prof.key_averages()
    with open(out, "w") as f:
        f.write(ka.table(sort_by="self_cpu_time_total", row_limit=40))
    torch.save({e.key: (e.self_cpu_time_total / 1e6, e.count) for e in ka}, out + ".pt")
    torch.save([(str(e.input_shapes[:2]), e.self_cpu_time_total / 1e6, e.count)
                for e in prof.key_averages(group_by_input_shape=True) if "flash_attention" in e.key],
               out + ".attn.pt")


def _attention_rows(path: str) -> dict:
    """{(q shape, k shape): (seconds, calls, query x key pairs per call summed over heads)}."""
    rows = {}
    if not Path(path).exists():
        return rows
    for shapes, sec, n in torch.load(path):
        q, k = json.loads(shapes)
        pairs = q[0] * q[1] * q[2] * k[2]  # [b, h, n, d] x [b, h, m, d]
        key = (tuple(q), tuple(k))
        s0, n0, _ = rows.get(key, (0.0, 0, pairs))
        rows[key] = (s0 + sec, n0 + n, pairs)
    return rows


def _print_attention(work: Path, sides) -> None:
    """Each side's attention calls grouped by shape, with the seconds per 1e9 query-key pairs."""
    for side in sides:
        rows = _attention_rows(str(work / f"profile_{side}.txt") + ".attn.pt")
        if not rows:
            continue
        total_s = sum(s for s, _, _ in rows.values())
        total_p = sum(p * n for _, n, p in rows.values())
        print(f"\n{side}: attention by shape ({total_s:.2f} s, {total_p / 1e9:.2f}e9 query-key pairs)")
        print(f"{'q [b,h,n,d]':>22s} {'k [b,h,m,d]':>22s} {'calls':>6s} {'s':>8s} {'pairs e9':>9s} {'ns/pair':>8s}")
        for (q, k), (sec, n, p) in sorted(rows.items(), key=lambda r: -r[1][0]):
            print(f"{str(list(q)):>22s} {str(list(k)):>22s} {n:6d} {sec:8.3f} {p * n / 1e9:9.3f} "
                  f"{sec / max(p * n, 1) * 1e9:8.2f}")


def _seconds(table: dict) -> dict:
    # tables from before the upstream worker converted to seconds hold microseconds
    total = sum(t for t, _ in table.values())
    return {k: (t / 1e6, n) for k, (t, n) in table.items()} if total > 1e5 else table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", type=Path, default=CACHE / "work" / "s512" / "case_512.pt")
    ap.add_argument("--upstream-src", type=Path, default=CACHE / "hallo-src")
    ap.add_argument("--venv", type=Path, default=CACHE / "upstream-venv")
    ap.add_argument("--paths", default="upstream,default,plain")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--reuse", action="store_true", help="load a side's table from an earlier run when present")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--extra", default="{}", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        torch.set_num_threads(1)
        profile_ours(str(args.case), args.out, args.worker, json.loads(args.extra))
        return
    work = args.case.parent
    tables = {}
    for side in args.paths.split(","):
        out = work / f"profile_{side}.txt"
        if args.reuse and Path(str(out) + ".pt").exists():
            tables[side] = _seconds(torch.load(str(out) + ".pt"))
            print(f"{side}: total self CPU {sum(t for t, _ in tables[side].values()):.2f} s (reused {out})")
            continue
        if side == "upstream":
            cmd = [str(args.venv / "bin" / "python"), str(ROOT / "bench" / "upstream_worker.py"), "--case",
                   str(args.case), "--upstream-src", str(args.upstream_src.resolve()), "--out", "/dev/null",
                   "--profile-step", str(out)]
        else:
            cmd = [sys.executable, __file__, "--worker", side, "--case", str(args.case), "--out", str(out),
                   "--extra", args.extra]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            sys.stderr.write(r.stderr[-4000:])
            raise SystemExit(f"{side} failed")
        tables[side] = _seconds(torch.load(str(out) + ".pt"))
        print(f"{side}: total self CPU {sum(t for t, _ in tables[side].values()):.2f} s ({out})")
    sides = list(tables)
    keys = set().union(*tables.values())
    base = sides[0]

    def t(side, k):
        return tables[side].get(k, (0.0, 0))

    rows = sorted(keys, key=lambda k: -max(abs(t(s, k)[0] - t(base, k)[0]) for s in sides))
    print(f"\n{'operator':40s}" + "".join(f"{s:>22s}" for s in sides) + "   (self CPU s / calls)")
    for k in rows[: args.top]:
        print(f"{k[:40]:40s}" + "".join(f"{t(s, k)[0]:12.3f} /{t(s, k)[1]:7d}" for s in sides))
    _print_attention(work, sides)


if __name__ == "__main__":
    main()
