"""A batch on a Ray cluster: one worker per GPU (or per CPU slot), each holding the models.

Ray is an optional extra (``pip install ".[ray]"``); nothing else in the package imports it.
Each worker is a Ray actor that keeps one :class:`~hallo_core.job.Session` for every job sent
to it, and runs a job exactly as the one-process batch does (:func:`hallo_core.batch.run_one`):
streaming into the output the job names, with generate's resume checkpoint beside it. The
driver hands a job to each idle worker and records the finished ones in the batch state file.
A job whose worker dies (a killed process, a lost node) is handed to a new worker, at most
``retries`` more times; since the checkpoint only ever describes clips that are on disk, the
new worker continues the partial file where the dead one left it instead of starting over
or writing over it. Outputs, checkpoints and the state file must be on storage every machine
sees under the same paths (docs/batch.md).

Without an address a local cluster is started that listens on 127.0.0.1 only.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections import deque
from typing import Callable, Optional

from .batch import DONE, FAILED, INTERRUPTED, describe_failure, pending, run_one
from .errors import one_line

# Ray reads this when it is imported: a local cluster then uses the loopback address, so none of
# its servers listens on the network.
_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


class RayUnavailable(RuntimeError):
    """Ray cannot be imported or the cluster cannot be reached."""


class Worker:
    """What one Ray actor holds: the models, read on its first job and kept for the next ones."""

    def __init__(self, models: str, device: str = "auto", dtype: Optional[str] = None,
                 frame: Optional[Callable] = None):
        from .job import Session

        torch_dtype = None
        if dtype:
            import torch

            torch_dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
        self.session = Session(models, device=device, dtype=torch_dtype, keep_audio_models=True)
        self.frame = frame
        self._stop = threading.Event()

    def info(self) -> dict:
        return {"pid": os.getpid(), "host": socket.gethostname(), "device": str(self.session.device)}

    def run(self, job) -> dict:
        t0 = time.time()
        try:
            result = run_one(self.session, job, self.frame, None, self._stop.is_set)
        except Exception as e:  # reported by the driver as the job's one line
            import traceback

            status, message = describe_failure(e)
            return {"status": status, "message": message, "seconds": time.time() - t0,
                    "traceback": traceback.format_exc() if status == FAILED else ""}
        if result is None or result.interrupted:
            kept = 0 if result is None else result.frames_written
            return {"status": INTERRUPTED, "message": f"{kept} frames kept", "seconds": time.time() - t0}
        return {"status": DONE, "seconds": time.time() - t0, "frames": result.frames_written,
                "message": f"continued from frame {result.resumed_from}" if result.resumed_from else ""}

    def stop(self) -> None:
        """Ends the job in flight at its next denoising step (its finished clips stay on disk)."""
        self._stop.set()


def _import_ray(local: bool):
    if local:
        os.environ.setdefault(_LOOPBACK_ENV, "0")
    try:
        import ray
    except ImportError as e:
        raise RayUnavailable(f"Ray is not installed ({one_line(e, 120)})") from None
    return ray


def _plan(ray, workers: Optional[int], n_jobs: int) -> tuple:
    """(number of workers, actor options): one per GPU, else one per CPU slot, capped by --workers."""
    res = ray.cluster_resources()
    gpus, cpus = int(res.get("GPU", 0)), int(res.get("CPU", 0))
    if gpus:
        n, opts = gpus, {"num_gpus": 1, "num_cpus": 0}
    else:
        n, opts = max(cpus, 1), {"num_cpus": 1}
    if workers:
        n = min(n, workers)
        if not gpus and cpus > n:  # fewer workers than slots: each gets the CPUs of one machine at most
            biggest = max(int(node.get("Resources", {}).get("CPU", 0)) for node in ray.nodes() if node.get("Alive"))
            opts["num_cpus"] = max(1, min(cpus // n, biggest))
    return max(1, min(n, n_jobs)), opts


def run_batch_ray(entries, state, models: str, *, address: Optional[str] = None, workers: Optional[int] = None,
                  device: str = "auto", dtype: Optional[str] = None, retries: int = 2,
                  frame: Optional[Callable] = None, should_stop: Optional[Callable[[], bool]] = None, guard=None,
                  log: Callable[[str], None] = print, on_done: Optional[Callable] = None) -> list:
    """Run the entries that are not finished on a Ray cluster; their outcomes (as run_batch's).

    ``address``: a running cluster (``ray start --head`` prints it; "auto" finds the local one);
    None starts a cluster on this machine for the batch and stops it at the end. ``workers``: at
    most this many. ``should_stop``: polled while jobs run; once true every worker is asked to
    stop its job at the next step. ``guard``: the CLI's InterruptGuard (its soft mode covers the
    run). ``on_done(entry)`` after each job.
    """
    todo = pending(entries, state)
    if not todo:
        return [e.outcome for e in entries]
    local = address is None
    ray = _import_ray(local)
    from ray.exceptions import RayActorError

    models = os.path.abspath(os.path.expanduser(os.fspath(models)))
    kw = {"include_dashboard": False} if local else {"address": address}
    try:
        ray.init(log_to_driver=False, **kw)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise RayUnavailable(f"cannot start or reach the Ray cluster {address or '(local)'}: {one_line(e, 200)}") from None
    actors, info, busy = [], [], {}
    try:
        n, opts = _plan(ray, workers, len(todo))
        Actor = ray.remote(Worker).options(max_concurrency=2, max_restarts=0, **opts)

        def start(i: int):
            a = Actor.remote(models, device, dtype, frame)
            what = ray.get(a.info.remote())
            log(f"worker {i + 1}: pid {what['pid']} on {what['host']} ({what['device']})")
            return a, what

        for i in range(n):
            a, what = start(i)
            actors.append(a)
            info.append(what)
        log(f"ray: {n} workers")
        queue, idle, stopping, replaced = deque(todo), list(range(n))[::-1], False, 0
        soft = guard.soft() if guard is not None else _nothing()
        with soft:
            while queue or busy:
                while idle and queue and not stopping:
                    w, e = idle.pop(), queue.popleft()
                    e.outcome.attempts += 1
                    busy[actors[w].run.remote(e.job)] = (w, e)
                    log(f"job {e.outcome.index}: running on worker {w + 1} (pid {info[w]['pid']} on {info[w]['host']})"
                        + (f", run {e.outcome.attempts}" if e.outcome.attempts > 1 else ""))
                if not busy:
                    break
                ready, _ = ray.wait(list(busy), num_returns=1, timeout=0.5)
                if not stopping and should_stop is not None and should_stop():
                    stopping = True
                    for a in actors:
                        a.stop.remote()
                for ref in ready:
                    w, e = busy.pop(ref)
                    o = e.outcome
                    try:
                        r = ray.get(ref)
                    except RayActorError as err:
                        log(f"job {o.index}: worker {w + 1} died ({one_line(err, 160)})")
                        if o.attempts <= retries and not stopping:
                            queue.appendleft(e)  # it resumes from its checkpoint on the new worker
                        else:
                            o.status, o.message = FAILED, f"its worker died {o.attempts} times"
                            _done(o, on_done, e)
                        if replaced < n * (retries + 1):
                            replaced += 1
                            actors[w], info[w] = start(w)
                            idle.append(w)
                        continue
                    o.status, o.message, o.traceback = r["status"], r["message"], r.get("traceback", "")
                    o.seconds += r["seconds"]
                    if o.status == DONE and state is not None:
                        state.record(e.key, e.job.out_path, o.seconds)
                    if o.status == INTERRUPTED:
                        stopping = True
                    idle.append(w)
                    _done(o, on_done, e)
    except KeyboardInterrupt:  # a second signal: stop at once; each checkpoint matches its file
        for _w, e in busy.values():
            e.outcome.status, e.outcome.message = INTERRUPTED, "stopped by a signal"
    finally:
        for a in actors:
            try:
                ray.kill(a)
            except Exception:  # an actor that is already gone
                pass
        ray.shutdown()
    return [e.outcome for e in entries]


def _done(outcome, on_done, entry) -> None:
    if on_done is not None:
        on_done(entry)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


__all__ = ["Worker", "RayUnavailable", "run_batch_ray"]
