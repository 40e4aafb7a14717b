"""``hallo batch JOBS``: many ``generate`` jobs from one file, the models read once.

Each row is parsed by generate's own option parser (the same names, types, choices and
defaults) and given generate's checks (:func:`hallo_core.cli.generate.check_job`); a row that
fails them is reported in one line and skipped. The rest run in this process with one
:class:`~hallo_core.job.Session` (:func:`hallo_core.batch.run_batch`), or on a Ray cluster with
``--ray`` (:mod:`hallo_core.batch_ray`). A run stopped by Ctrl-C keeps the job in flight as
generate does (a playable partial file and its checkpoint) and prints the summary; running the
same command again skips the finished jobs and continues the stopped one. docs/batch.md.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, List, Optional

from ..errors import UserError, one_line

# set once for the whole batch (its own options), so a row may not give them
BATCH_LEVEL = ("models", "device", "dtype", "download", "resume", "debug", "help")
PATH_FIELDS = ("image", "audio", "out")


def add_arguments(b: argparse.ArgumentParser) -> None:
    b.add_argument("jobs", metavar="JOBS",
                   help="a .jsonl (one JSON object a line) or .csv (a header row) of jobs: image, audio, out and "
                        "any option of generate by its name (steps, seed, hallo2, face, frame, ...); relative "
                        "paths are taken from the folder of JOBS")
    b.add_argument("--models", required=True, help="models folder in the official Hugging Face layout")
    b.add_argument("--device", default="auto", help="torch device (auto = cuda if available, else cpu)")
    b.add_argument("--dtype", choices=("bf16", "fp16", "fp32"), default=None,
                   help="default: fp16 on CUDA (upstream's), fp32 on CPU")
    b.add_argument("--download", action="store_true", help="fetch missing official weights first")
    b.add_argument("--state", default=None,
                   help="the file that records the finished jobs (None: JOBS.state.json beside JOBS)")
    b.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="run the jobs on a Ray cluster (pip install \".[ray]\"): one worker per GPU, or per CPU "
                        "slot without GPUs; ADDRESS of a running cluster (ray start --head prints it; auto finds "
                        "the one on this machine), or none to start one here for the batch (127.0.0.1 only)")
    b.add_argument("--workers", type=int, default=None, metavar="N", help="with --ray: at most N workers")
    b.add_argument("--retries", type=int, default=2, metavar="N",
                   help="with --ray: run a job whose worker died again, up to N more times (it resumes)")


def _row_namespace(row, models: str, base: Path, gen: argparse.ArgumentParser, batch) -> argparse.Namespace:
    """The row as generate's parsed arguments; UserError for a field generate would refuse."""
    if row.error:
        raise UserError(row.error, "JOBS", "write one job a line (docs/batch.md)")
    flags = {}
    for action in gen._actions:
        for s in action.option_strings:
            if s.startswith("--"):
                flags[s[2:]] = flags[s[2:].replace("-", "_")] = action
    argv = ["--models", models]
    for name, value in row.fields.items():
        key = str(name).strip().lstrip("-")
        action = flags.get(key) or flags.get(key.replace("-", "_"))
        if action is None or action.dest in BATCH_LEVEL:
            known = sorted({a.dest for a in flags.values() if a.dest not in BATCH_LEVEL})
            what = (f"{name} is set for the whole batch (hallo batch --{action.dest.replace('_', '-')})"
                    if action is not None else f"unknown field {name!r}")
            raise UserError(what, name, "fields: " + ", ".join(known))
        if value is None:
            continue
        if action.dest in PATH_FIELDS:
            value = os.path.join(base, os.path.expanduser(str(value)))
        if action.nargs == 0:  # a switch (hallo2, no_separator): true or false
            on = _switch(value)
            if on is None:
                raise UserError(f"{name} is {value!r}, not true or false", name, "give true or false")
            if on:
                argv.append(action.option_strings[-1])
            continue
        if isinstance(value, (list, dict)):
            raise UserError(f"{name} is a {type(value).__name__}, not one value", name, "give one value")
        argv += [action.option_strings[-1], str(value)]
    message = []

    def refuse(text):  # argparse's own mistakes (a missing field, a value of the wrong type)
        message.append(text)
        raise SystemExit(2)

    gen.error = refuse
    try:
        a = gen.parse_args(argv)
    except SystemExit:
        raise UserError(one_line(message[0] if message else "cannot be read").replace("--", ""), "JOBS",
                        "fix the row (its fields are generate's options, without --)") from None
    a.device, a.dtype, a.download, a.resume = batch.device, batch.dtype, batch.download, True
    if batch.ray:
        a.device = "cpu"  # the workers' GPUs need not exist where the rows are checked; each worker uses --device
    a.argv, a.prog, a.guard = batch.argv, batch.prog, batch.guard
    return a


def _switch(value) -> Optional[bool]:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    return True if text in ("true", "yes", "1", "on") else False if text in ("false", "no", "0", "off", "") else None


def frame_job(session, job):
    """The face of ``job``, with generate's one-line errors (module level: Ray workers call it)."""
    from .generate import _frame

    return _frame(SimpleNamespace(face=job.face), session, job)


def _prepare(a, gen) -> tuple:
    """Every row checked: (entries, state). Refused rows are printed at once."""
    from ..batch import BatchState, Entry, Outcome, describe_failure, job_key, read_jobs
    from .generate import check_job

    jobs_path = Path(os.path.expanduser(a.jobs))
    rows = read_jobs(jobs_path)
    base = jobs_path.resolve().parent
    state = BatchState(Path(a.state) if a.state else jobs_path.with_name(jobs_path.name + ".state.json"))
    entries: List[Entry] = []
    outs: Dict[str, int] = {}
    inputs: Dict[str, int] = {}
    fetched: set = set()
    for row in rows:
        name = Path(str(row.fields.get("out", ""))).name or "?"
        e = Entry(Outcome(row.index, name))
        entries.append(e)
        try:
            ra = _row_namespace(row, a.models, base, gen, a)
            e.outcome.out = os.path.abspath(ra.out)
            _clash(row, ra, outs, inputs)
            _pf, job = check_job(ra, fetched)
        except Exception as exc:  # a refused row costs only its own job
            if a.debug and not isinstance(exc, UserError):
                raise
            e.outcome.status, e.outcome.message = describe_failure(exc)
            print(f"job {row.index} ({row.where}): {e.outcome.message}", file=sys.stderr, flush=True)
            continue
        e.job, e.key = job, job_key(job, a.models)
    return entries, state


def _clash(row, ra, outs: Dict[str, int], inputs: Dict[str, int]) -> None:
    """Two jobs may not write one file, and no job may write another one's input."""
    out = os.path.realpath(ra.out)
    for p in (ra.image, ra.audio):
        inputs.setdefault(os.path.realpath(p), row.index)
    if out in outs:
        raise UserError(f"{ra.out} is also the output of job {outs[out]}", "out", "give every job its own out")
    if out in inputs and inputs[out] != row.index:
        raise UserError(f"{ra.out} is an input of job {inputs[out]}", "out", "choose another out")
    for p, i in ((os.path.realpath(ra.image), row.index), (os.path.realpath(ra.audio), row.index)):
        if p in outs:
            raise UserError(f"{p} is the output of job {outs[p]}", "image/audio", "give the job an input no job writes")
    outs[out] = row.index


def run(a, gen: argparse.ArgumentParser) -> int:
    """The command: check every row, run what is left, print the summary; the exit code."""
    from ..batch import exit_code, pending, summary_table

    if a.ray:
        import importlib.util

        if importlib.util.find_spec("ray") is None:  # before the rows are checked: the run could not start
            raise UserError("Ray is not installed", "--ray", 'pip install ".[ray]" (or pip install ray), or leave '
                            "--ray out to run the jobs in this process")
    entries, state = _prepare(a, gen)
    todo = pending(entries, state)
    for e in entries:
        if e.outcome.status == "finished earlier":
            print(f"job {e.outcome.index}: finished earlier, {e.outcome.out} is kept", file=sys.stderr)
    a.interrupt_note = "the finished jobs are kept; run the same command again to continue"
    if todo:
        if a.ray:
            _run_ray(a, entries, state, len(todo))
        else:
            _run_here(a, entries, state, len(todo))
    if a.debug:
        for e in entries:
            if e.outcome.traceback:
                print(f"job {e.outcome.index}:\n{e.outcome.traceback}", file=sys.stderr)
    print(summary_table([e.outcome for e in entries]), flush=True)
    if a.guard.stopped:
        print(f"interrupted ({a.guard.signal_name}): the job in flight keeps its playable partial file and "
              f"checkpoint; continue with: {a.prog} {' '.join(_quote(x) for x in a.argv)}", file=sys.stderr)
        return a.guard.exit_code
    return exit_code([e.outcome for e in entries])


def _quote(s: str) -> str:
    import shlex

    return shlex.quote(s)


def _run_here(a, entries, state, n_todo: int) -> None:
    from tqdm import tqdm

    from ..batch import run_batch
    from ..job import Session
    from .common import device as _device, dtype as _dtype

    session = Session(a.models, device=_device(a.device), dtype=_dtype(a.dtype) if a.dtype else None,
                      keep_audio_models=True)
    jobs_bar = tqdm(total=n_todo, desc="batch", unit="job", position=0, file=sys.stderr)
    bars: dict = {}

    def on_start(e):
        jobs_bar.set_postfix_str(f"job {e.outcome.index} {e.outcome.name}")
        tqdm.write(f"job {e.outcome.index}: {e.job.out_path}", file=sys.stderr)

    def progress(e, clip, n, step, n_steps):
        bar = bars.get(e.outcome.index)
        if bar is None:
            bar = bars[e.outcome.index] = tqdm(total=n * n_steps, desc=f"job {e.outcome.index}", unit="step",
                                               position=1, leave=False, file=sys.stderr)
        bar.n = clip * n_steps + step
        bar.set_postfix_str(f"clip {clip + 1}/{n}")
        bar.refresh()

    def on_done(e):
        bar = bars.pop(e.outcome.index, None)
        if bar is not None:
            bar.close()
        o = e.outcome
        line = f"job {o.index}: {o.status} ({o.seconds:.1f} s)" + (f": {o.message}" if o.message else "")
        tqdm.write(line, file=sys.stderr)
        jobs_bar.update(1)

    guard = a.guard
    try:
        with guard.soft():  # a signal stops the job in flight at its next step and ends the batch
            run_batch(session, entries, state, frame=frame_job, should_stop=guard.should_stop, on_start=on_start,
                      progress=progress, on_done=on_done)
    finally:
        for bar in bars.values():
            bar.close()
        jobs_bar.close()


def _run_ray(a, entries, state, n_todo: int) -> None:
    from tqdm import tqdm

    from ..batch_ray import RayUnavailable, run_batch_ray

    jobs_bar = tqdm(total=n_todo, desc="batch", unit="job", file=sys.stderr)

    def on_done(e):
        o = e.outcome
        tqdm.write(f"job {o.index}: {o.status} ({o.seconds:.1f} s)" + (f": {o.message}" if o.message else ""),
                   file=sys.stderr)
        jobs_bar.update(1)

    try:
        run_batch_ray(entries, state, a.models, address=None if a.ray == "local" else a.ray, workers=a.workers,
                      device=a.device, dtype=a.dtype, retries=a.retries, frame=frame_job,
                      should_stop=a.guard.should_stop, guard=a.guard, on_done=on_done,
                      log=lambda line: tqdm.write(line, file=sys.stderr))
    except RayUnavailable as e:
        raise UserError(str(e), "--ray", 'pip install ".[ray]" (or pip install ray), or leave --ray out') from None
    finally:
        jobs_bar.close()
