"""Many videos from one process: a jobs file, a state file of finished jobs, and the batch loop.

A batch is a list of :class:`~hallo_core.job.GenerateJob` run by one
:class:`~hallo_core.job.Session`, so the weights are read once for all of them (a job that needs
the other network, Hallo or Hallo2, reads that one once as well). Every job streams into the output
it names and keeps generate's resume checkpoint beside it (``OUT.mp4.resume.pt``), so a stopped
job continues where it stopped. Which jobs are finished is kept in a state file written
atomically after each job: a job counts as finished when the state file records it with these very
inputs and settings, its output is still the file that was recorded, and no checkpoint lies beside
it. A file at the output path alone does not count: a run killed before its first clip leaves
one that holds nothing.

    from hallo_core.batch import BatchState, run_batch
    from hallo_core.job import GenerateJob, Session

    jobs = [GenerateJob("a.jpg", "a.wav", "a.mp4"), GenerateJob("b.jpg", "b.wav", "b.mp4")]
    with Session("pretrained_models") as s:
        outcomes = run_batch(s, jobs, BatchState("jobs.state.json"))

``hallo batch`` (:mod:`hallo_core.cli.batch`) reads the jobs from a JSONL or CSV file
(:func:`read_jobs`), gives every row generate's checks, and drives this loop or its Ray
counterpart (:mod:`hallo_core.batch_ray`).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Union

from .errors import UserError, one_line

PathLike = Union[str, os.PathLike]
STATE_VERSION = 1

# outcome statuses; the first two count as success
DONE, FINISHED, BAD, FAILED, INTERRUPTED, NOT_RUN = ("done", "finished earlier", "bad", "failed", "interrupted",
                                                     "not run")
SUCCESS = (DONE, FINISHED)


# -- the jobs file --------------------------------------------------------------------------------

@dataclass
class Row:
    """One job of a jobs file: its fields as written (CSV cells are text, JSON keeps its types)."""

    index: int  # 1-based, in file order
    where: str  # "jobs.csv line 4": for messages
    fields: Dict[str, object] = field(default_factory=dict)
    error: str = ""  # a row that could not be read at all


def read_jobs(path: PathLike) -> List[Row]:
    """The rows of a JSONL file (one JSON object a line) or a CSV file (a header row of field
    names, then one job a row; empty cells are not given). Blank lines and lines starting with
    ``#`` are skipped. A row that cannot be read comes back with ``error`` set, so that one bad
    line costs only its own job."""
    p = Path(os.path.expanduser(os.fspath(path)))
    if not p.is_file():
        raise UserError(f"jobs file {path} does not exist", "JOBS", "give a .jsonl or .csv file of jobs")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"jobs file {path} cannot be read ({one_line(e, 120)})", "JOBS",
                        "give a UTF-8 .jsonl or .csv file") from None
    kind = "csv" if p.suffix.lower() == ".csv" else "jsonl" if p.suffix.lower() in (".jsonl", ".json", ".ndjson") \
        else ("jsonl" if text.lstrip().startswith("{") else "csv")
    rows = _read_csv(text, p.name) if kind == "csv" else _read_jsonl(text, p.name)
    if not rows:
        raise UserError(f"jobs file {path} holds no job", "JOBS",
                        "write one job a line: {\"image\": ..., \"audio\": ..., \"out\": ...}")
    return rows


def _read_jsonl(text: str, name: str) -> List[Row]:
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        row = Row(len(rows) + 1, f"{name} line {n}")
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            row.error = f"not a JSON object ({e.msg} at column {e.colno})"
        else:
            if isinstance(value, dict):
                row.fields = value
            else:
                row.error = f"a JSON {type(value).__name__}, not an object of fields"
        rows.append(row)
    return rows


def _read_csv(text: str, name: str) -> List[Row]:
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1)
             if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        return []
    reader = csv.reader([line for _, line in lines])
    header = [h.strip() for h in next(reader)]
    rows = []
    for (n, _), cells in zip(lines[1:], reader):
        row = Row(len(rows) + 1, f"{name} line {n}")
        if len(cells) > len(header):
            row.error = f"{len(cells)} cells, but the header names {len(header)} fields"
        else:
            row.fields = {h: c.strip() for h, c in zip(header, cells) if c.strip() != ""}
        rows.append(row)
    return rows


# -- which jobs are finished ----------------------------------------------------------------------

def job_key(job, models: PathLike = "") -> str:
    """The identity of a job: its paths, every setting, and the size and time of its inputs (a
    replaced photo or audio makes it a new job)."""
    from .job import job_settings

    d = {k: v for k, v in asdict(job).items() if k not in ("resume", "settings")}
    d["settings"] = asdict(job_settings(job))
    for k in ("image", "audio", "out"):
        d[k] = os.path.abspath(os.path.expanduser(os.fspath(getattr(job, k))))
    for k in ("image", "audio"):
        st = _stat(d[k])
        d[k + "_stat"] = list(st[1:]) if st else None
    d["models"] = os.path.abspath(os.fspath(models)) if models else ""
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:32]


class BatchState:
    """The finished jobs of a batch, in a JSON file rewritten atomically after each job."""

    def __init__(self, path: Optional[PathLike]):
        self.path = Path(path) if path is not None else None
        self.jobs: Dict[str, dict] = {}
        if self.path is not None and self.path.is_file():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                data = {}  # unreadable: nothing counts as finished, every job runs (and resumes)
            if data.get("version") == STATE_VERSION and isinstance(data.get("jobs"), dict):
                self.jobs = data["jobs"]

    def finished(self, key: str, out: PathLike) -> bool:
        rec = self.jobs.get(key)
        out = Path(out)
        if rec is None or rec.get("out") != os.path.abspath(out):
            return False
        st = _stat(out)
        return st is not None and [st[1], st[2]] == rec.get("file") and not _checkpoint(out).exists()

    def record(self, key: str, out: PathLike, seconds: float) -> None:
        st = _stat(out)
        if st is None:
            return
        self.jobs[key] = {"out": os.path.abspath(out), "file": [st[1], st[2]], "seconds": round(seconds, 3)}
        self._save()

    def _save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"version": STATE_VERSION, "jobs": self.jobs}, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)  # a kill leaves the old state or the new one, never half of one


def _checkpoint(out: Path) -> Path:
    from .pipeline.resume import checkpoint_path_for

    return checkpoint_path_for(out)


def _stat(p: PathLike):
    try:
        st = os.stat(p)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


# -- outcomes -------------------------------------------------------------------------------------

@dataclass
class Outcome:
    """What became of one job."""

    index: int
    name: str
    status: str = NOT_RUN
    seconds: float = 0.0
    out: str = ""
    message: str = ""  # the one line of a bad, failed or interrupted job
    attempts: int = 0  # runs started (Ray retries a job whose worker died)
    traceback: str = ""  # of a job that failed in the engine

    @property
    def ok(self) -> bool:
        return self.status in SUCCESS


def summary_table(outcomes: Sequence[Outcome]) -> str:
    """The closing table: job, status, seconds, output."""
    head = ("job", "status", "seconds", "output")
    rows = [(f"{o.index} {o.name}", o.status + (f" ({o.attempts} runs)" if o.attempts > 1 else ""),
             f"{o.seconds:.1f}" if o.status in (DONE, INTERRUPTED, FAILED) else "-", o.out or "-")
            for o in outcomes]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head, *rows]]
    counts: Dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    lines.append(", ".join(f"{n} {s}" for s, n in counts.items()))
    return "\n".join(lines)


# -- the loop -------------------------------------------------------------------------------------

@dataclass
class Entry:
    """A job of a batch: its outcome so far and, when it can run, the job and its key."""

    outcome: Outcome
    job: object = None  # GenerateJob; None for a row that was refused before the run
    key: str = ""


def entries_for(jobs: Iterable, models: PathLike = "") -> List[Entry]:
    """Entries for plain GenerateJobs (the library's way in; the CLI makes them from rows)."""
    out = []
    for i, job in enumerate(jobs, 1):
        out.append(Entry(Outcome(i, Path(os.fspath(job.out)).name, out=os.fspath(job.out_path)), job,
                         job_key(job, models)))
    return out


def pending(entries: Sequence[Entry], state: Optional[BatchState]) -> List[Entry]:
    """Mark the finished entries (status FINISHED) and return those left to run."""
    todo = []
    for e in entries:
        if e.job is None or e.outcome.status != NOT_RUN:
            continue
        if state is not None and state.finished(e.key, e.job.out_path):
            e.outcome.status = FINISHED
            continue
        todo.append(e)
    return todo


def run_one(session, job, frame: Optional[Callable] = None, progress: Optional[Callable] = None,
            should_stop: Optional[Callable[[], bool]] = None):
    """Frame, embed and generate one job with ``session`` (a JobResult). ``frame(session, job)``
    replaces :meth:`Session.frame` (the CLI's maps the face errors to its one-line errors)."""
    from dataclasses import replace

    job = replace(job, resume=True)  # a batch always continues what an earlier run left
    out = job.out_path
    partial = out.with_name(out.name + ".partial")
    if not out.exists() and partial.is_file() and job.checkpoint.is_file():
        os.replace(partial, out)  # a run killed while it reopened the file to continue it left it there
    framed = frame(session, job) if frame is not None else session.frame(job)
    if should_stop is not None and should_stop():
        return None
    audio = session.embed(job)
    if should_stop is not None and should_stop():
        return None
    return session.run(job, framed=framed, audio=audio, progress=progress, should_stop=should_stop)


def describe_failure(e: BaseException) -> tuple:
    """(status, one line) of an exception that ended a job."""
    from .errors import as_user_error

    ue = e if isinstance(e, UserError) else as_user_error(e)
    if ue is not None:
        return BAD, ue.cli_line
    if type(e).__name__ == "ResumeMismatchError":
        return BAD, (f"error: {one_line(e)} (the output's .resume.pt): give the row the inputs and settings of the "
                     "interrupted run, or delete the checkpoint to start over")
    return FAILED, f"{type(e).__name__}: {one_line(e, 300)}"


def run_batch(session, jobs: Union[Sequence, Sequence[Entry]], state: Optional[BatchState] = None, *,
              frame: Optional[Callable] = None, should_stop: Optional[Callable[[], bool]] = None,
              on_start: Optional[Callable] = None, progress: Optional[Callable] = None,
              on_done: Optional[Callable] = None) -> List[Outcome]:
    """Run every job that is not finished, one after the other, with the models of ``session``.

    ``jobs``: GenerateJobs, or Entries. A job that fails (a bad input found late, an error of the
    engine) is recorded with its one line and the next one runs. ``should_stop`` (polled between
    jobs and before every denoising step) ends the batch: the job in flight keeps its playable
    partial file and its checkpoint, the rest stay "not run". So does a KeyboardInterrupt, which
    is caught here so that the outcomes still come back. ``on_start(entry)``,
    ``progress(entry, clip, n_clips, step, n_steps)`` and ``on_done(entry)`` report.
    """
    entries = list(jobs) if jobs and isinstance(jobs[0], Entry) else entries_for(jobs, session.models.root)
    todo = pending(entries, state)
    stopped = False
    for e in todo:
        if stopped or (should_stop is not None and should_stop()):
            break
        o = e.outcome
        o.attempts += 1
        if on_start is not None:
            on_start(e)
        t0 = time.time()
        cb = None if progress is None else (lambda c, n, s, ns, frames, e=e: progress(e, c, n, s, ns))
        try:
            result = run_one(session, e.job, frame, cb, should_stop)
        except KeyboardInterrupt:
            o.status, o.message, stopped = INTERRUPTED, "stopped by a signal", True
        except Exception as exc:  # one job's fault is reported and the batch goes on
            o.status, o.message = describe_failure(exc)
            if o.status == FAILED:
                import traceback

                o.traceback = traceback.format_exc()
        else:
            if result is None or result.interrupted:
                o.status, stopped = INTERRUPTED, True
                o.message = "stopped" if result is None else f"{result.frames_written} of {result.n_frames} frames kept"
            else:
                o.status = DONE
                if result.resumed_from:
                    o.message = f"continued from frame {result.resumed_from}"
                if state is not None:
                    state.record(e.key, e.job.out_path, time.time() - t0)
        o.seconds = time.time() - t0
        if on_done is not None:
            on_done(e)
    return [e.outcome for e in entries]


def exit_code(outcomes: Sequence[Outcome]) -> int:
    """0: every job done or finished earlier; 2: some job was refused for its inputs; 1: some job
    failed in the engine (an interrupted batch exits with the signal's code, set by the CLI)."""
    if any(o.status == FAILED for o in outcomes):
        return 1
    return 0 if all(o.ok for o in outcomes) else 2


__all__ = ["Row", "read_jobs", "job_key", "BatchState", "Outcome", "Entry", "entries_for", "pending", "run_one",
           "run_batch", "summary_table", "exit_code", "describe_failure", "DONE", "FINISHED", "BAD", "FAILED",
           "INTERRUPTED", "NOT_RUN"]
