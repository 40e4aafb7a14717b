"""Levers and fast modes of our pipeline, each against our own default path on one case.

Compares against **our default faithful path**, not upstream (``bench_vs_upstream.py`` does that).
It reuses a case written by ``bench_vs_upstream.py`` (same seeded SD1.5-shaped random ``net.pth``,
tiny VAE, inputs and noise) and its ``--worker`` mode, so every run is a separate process, one
thread, float32, and the first process run is not favoured by a warm cache.

Two tables:

* ``--levers``: changes meant to keep the output (channels-last, ``torch.compile`` of the
  denoiser). Each is timed over ``--rounds`` alternating rounds with the default; the output
  difference to the default is printed (float32; a lever is kept only if it stays within
  upstream's own float32 spread and speeds up). ``torch.compile`` is timed twice: the first
  ``generate`` in the process (compile included) and a second one (graph reused).
* ``--fast``: the opt-in non-faithful modes (few-step DPM-Solver++ / UniPC, CFG on the first
  steps only, bfloat16) against the faithful 40-step DDIM output of the same case: speed-up in
  CPU time and output distance. Random weights say nothing of picture quality.

    python bench/bench_levers.py --case ~/.cache/hallo-bench/work/s512/case_512.pt --levers --fast
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "bench" / "bench_vs_upstream.py"

LEVERS = {
    "default": {},
    "channels_last": {"prepare": {"channels_last": True}},
    "compile": {"prepare": {"compile": True}, "warmup": True},
}
# opt-in fast modes (tests/support/presets.py fast_preset shapes), against faithful 40-step DDIM
FAST = {
    "faithful ddim 40": {"steps": 40},
    "dpmpp 20, cfg on 10": {"scheduler": "dpmpp", "steps": 20, "cfg_steps": 10},
    "unipc 10, cfg on 5": {"scheduler": "unipc", "steps": 10, "cfg_steps": 5},
    "unipc 10, cfg on 5, bf16": {"scheduler": "unipc", "steps": 10, "cfg_steps": 5, "dtype": "bfloat16"},
}


def run(case: Path, out: Path, extra: dict) -> dict:
    extra = dict(extra)
    dtype = extra.pop("dtype", "float32")
    cmd = [sys.executable, str(WORKER), "--worker", "default", "--case", str(case), "--out", str(out),
           "--dtype", dtype, "--threads", "1", "--extra", json.dumps(extra)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(r.stdout[-2000:] + r.stderr[-4000:])
        raise SystemExit(f"worker failed: {extra}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def frames(path: Path) -> torch.Tensor:
    return torch.load(path)["frames"]


def levers(case: Path, work: Path, rounds: int) -> None:
    names = list(LEVERS)
    cpu = {k: [] for k in names}
    wall = {k: [] for k in names}
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            res = run(case, work / f"lever_{name}_r{r}.pt", LEVERS[name])
            cpu[name].append(res["cpu"])
            wall[name].append(res["wall"])
            extra = f", first call incl. compile cpu {res['warmup_cpu']:.2f} s" if "warmup_cpu" in res else ""
            print(f"round {r + 1}  {name:13s} wall {res['wall']:7.2f} s  cpu {res['cpu']:7.2f} s{extra}", flush=True)
    base = frames(work / "lever_default_r0.pt")
    for name in names:
        mc = statistics.median(cpu[name])
        d = frames(work / f"lever_{name}_r0.pt")
        print(f"{name:13s} median cpu {mc:7.2f} s  wall {statistics.median(wall[name]):7.2f} s  "
              f"default/this {statistics.median(cpu['default']) / mc:.3f}x cpu  "
              f"vs default rel L2 {rel(d, base):.2e} max abs {(d - base).abs().max():.2e}")


def fast(case: Path, work: Path, modes, reuse: bool) -> None:
    """``modes``: names of FAST to run; ``reuse``: take the faithful 40-step output (and its
    timing, from its .json) from an earlier run when present, so one mode can be added later."""
    res = {}
    ref_name = "faithful ddim 40"
    for name in [ref_name] + [m for m in modes if m != ref_name]:
        out = work / f"fast_{name.replace(' ', '_').replace(',', '')}.pt"
        note = out.with_suffix(".json")
        if reuse and name == ref_name and out.exists():
            # an earlier run's frames; its timing only if that run wrote one
            res[name] = json.loads(note.read_text()) if note.exists() else {"cpu": float("nan")}
            print(f"{name:26s} reused {out} (timing: {res[name].get('date', 'not recorded')})")
            continue
        res[name] = dict(run(case, out, FAST[name]), date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
        note.write_text(json.dumps(res[name]))
        print(f"{name:26s} wall {res[name]['wall']:8.2f} s  cpu {res[name]['cpu']:8.2f} s", flush=True)
    ref = frames(work / f"fast_{ref_name.replace(' ', '_')}.pt")
    for name in res:
        d = frames(work / f"fast_{name.replace(' ', '_').replace(',', '')}.pt")
        print(f"{name:26s} speed-up vs faithful 40: {res[ref_name]['cpu'] / res[name]['cpu']:6.2f}x cpu  "
              f"rel L2 {rel(d, ref):.3e}  max abs {(d - ref).abs().max():.3e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", type=Path, required=True, help="case_<size>.pt written by bench_vs_upstream.py")
    ap.add_argument("--work", type=Path, default=None, help="where outputs go (default: beside the case)")
    ap.add_argument("--levers", action="store_true")
    ap.add_argument("--fast", action="store_true")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--modes", default=";".join(FAST), help="fast modes to run (names of FAST, separated by ;)")
    ap.add_argument("--reuse", action="store_true", help="reuse the faithful 40-step run of an earlier --fast")
    a = ap.parse_args()
    work = a.work or a.case.parent
    work.mkdir(parents=True, exist_ok=True)
    meta = torch.load(a.case, weights_only=True)
    s = meta["settings"]
    print(f"case {a.case}: {meta['size']} px, {meta['num_frames']} frames in clips of {s['clip_frames']}, "
          f"{s['steps']} DDIM steps (faithful-40 table uses 40), CFG {s['cfg']}; torch {torch.__version__}")
    if a.levers:
        levers(a.case, work, a.rounds)
    if a.fast:
        fast(a.case, work, [m.strip() for m in a.modes.split(";")], a.reuse)


if __name__ == "__main__":
    main()
