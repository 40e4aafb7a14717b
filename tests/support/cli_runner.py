"""``python -m hallo_core ARGS`` in a fresh process, without paying for the imports every time.

A cold interpreter spends 4 s importing torch and 10 s more on diffusers before the CLI checks
anything (measured on the 2-core test machine), which would make a table of 50 bad inputs
take minutes. :class:`WarmCli` starts one server process that imports those modules once and
then forks a child per command: the child runs the ``hallo_core`` package as ``__main__``
with ``runpy`` (what ``python -m`` does), with its own argv, environment, working folder,
stdout and stderr files, and its exit status is the command's. Signals go to the child's pid
as to any process. A command may name ``setup`` functions (``"module:function"``) that the
child calls before it runs the CLI: how a test puts a fault into that one process (a disk that
fills up, tests/support/faults.py) without touching the code under test. Tests that must see the real entry point run ``python -m hallo_core`` cold
as well (tests/test_bad_inputs_cli.py compares the two).

POSIX only (fork); :func:`available` says whether it can run here.
"""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Union

REPO = Path(__file__).resolve().parents[2]
WARM_MODULES = ("torch", "numpy", "PIL.Image", "av", "soundfile", "onnxruntime", "tqdm", "diffusers",
                "transformers", "huggingface_hub", "hallo_core.cli.main", "hallo_core.cli.generate",
                "hallo_core.cli.preflight", "hallo_core.assets.manifest", "hallo_core.models", "hallo_core.audio",
                "hallo_core.face", "hallo_core.pipeline.generate", "hallo_core.pipeline.full_frame",
                "hallo_core.media.video", "hallo_core.io.vae", "hallo_core.upscale.file_upscale")


def available() -> bool:
    return hasattr(os, "fork") and sys.platform != "win32"


@dataclass
class Result:
    returncode: int  # as subprocess reports it: negative for a signal that ended the process
    stdout: str
    stderr: str


def _serve() -> None:  # pragma: no cover - runs in the server process
    import importlib
    import runpy
    import signal
    import traceback

    for name in WARM_MODULES:
        importlib.import_module(name)
    from diffusers import AutoencoderKL  # noqa: F401  (the lazy module's heavy part)
    from transformers import Wav2Vec2Config  # noqa: F401

    proto = os.fdopen(os.dup(1), "w", buffering=1)
    proto.write("ready\n")
    for line in sys.stdin:
        req = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.chdir(req["cwd"])
                for k, v in req["env"].items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
                for fd, path in ((1, req["stdout"]), (2, req["stderr"])):
                    f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                    os.dup2(f, fd)
                    os.close(f)
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                for spec in req.get("setup", ()):
                    module, _, function = spec.partition(":")
                    getattr(importlib.import_module(module), function)()
                if "OMP_NUM_THREADS" in req["env"]:  # read once, when torch loaded in the server
                    import torch

                    torch.set_num_threads(int(req["env"]["OMP_NUM_THREADS"]))
                signal.signal(signal.SIGINT, signal.default_int_handler)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                sys.argv = ["hallo_core"] + list(req["argv"])
                try:
                    runpy.run_module("hallo_core", run_name="__main__", alter_sys=True)
                    code = 0
                except SystemExit as e:
                    if e.code is None or isinstance(e.code, int):
                        code = e.code or 0
                    else:
                        print(e.code, file=sys.stderr)
                except BaseException:  # what the interpreter prints for an uncaught exception
                    traceback.print_exc()
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code)
        proto.write(json.dumps({"pid": pid}) + "\n")
        _, status = os.waitpid(pid, 0)
        proto.write(json.dumps({"rc": os.waitstatus_to_exitcode(status)}) + "\n")


class WarmCli:
    """One server; :meth:`run` (or :meth:`start` + :meth:`wait`) per command, one at a time."""

    def __init__(self, env: Optional[Dict[str, str]] = None, log_dir: Optional[Path] = None):
        self.env = dict(os.environ if env is None else env)
        self.env["PYTHONPATH"] = str(REPO) + os.pathsep + self.env.get("PYTHONPATH", "")
        self.log_dir = Path(log_dir) if log_dir else None
        self.proc = subprocess.Popen([sys.executable, "-c", "from tests.support.cli_runner import _serve; _serve()"],
                                     cwd=REPO, env=self.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1)
        self._n = 0
        self._pending = None
        line = self._read(300)
        if line.strip() != "ready":
            raise RuntimeError(f"the warm CLI server did not start: {line!r}")

    def _read(self, timeout: float) -> str:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise TimeoutError(f"no answer from the warm CLI server in {timeout} s")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the warm CLI server exited ({self.proc.poll()})")
        return line

    def start(self, argv: List[str], cwd: Path, env: Optional[Dict[str, Optional[str]]] = None,
              setup: List[str] = ()) -> int:
        """Fork a child for ``python -m hallo_core *argv``; returns its pid (signal it freely)."""
        assert self._pending is None, "one command at a time"
        self._n += 1
        base = (self.log_dir or Path(cwd)) / f".warm-cli-{self._n}"
        out, err = Path(str(base) + ".out"), Path(str(base) + ".err")
        req = {"argv": [str(x) for x in argv], "cwd": str(cwd), "env": env or {}, "stdout": str(out),
               "stderr": str(err), "setup": list(setup)}
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        pid = json.loads(self._read(60))["pid"]
        self._pending = (pid, out, err)
        return pid

    def stderr_so_far(self) -> str:
        _, _, err = self._pending
        return err.read_text(errors="replace") if err.exists() else ""

    def wait(self, timeout: float = 300) -> Result:
        pid, out, err = self._pending
        try:
            rc = json.loads(self._read(timeout))["rc"]
        except TimeoutError:
            os.kill(pid, 9)
            raise
        finally:
            self._pending = None
        res = Result(rc, out.read_text(errors="replace"), err.read_text(errors="replace"))
        for p in (out, err):
            p.unlink()
        return res

    def run(self, argv: List[str], cwd: Path, env: Optional[Dict[str, Optional[str]]] = None,
            timeout: float = 300, setup: List[str] = ()) -> Result:
        self.start(argv, cwd, env, setup)
        return self.wait(timeout)

    def wait_for(self, text: str, timeout: float = 300) -> None:
        """Block until the running command's stderr holds ``text``."""
        deadline = time.monotonic() + timeout
        while text not in self.stderr_so_far():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{text!r} did not appear on stderr: {self.stderr_so_far()[-2000:]}")
            time.sleep(0.02)

    def signal_when(self, argv: List[str], cwd: Path, when: Union[str, Callable[[str], bool]], sig: int,
                    env: Optional[Dict[str, Optional[str]]] = None, timeout: float = 300) -> Result:
        """Run a command and send it ``sig`` once ``when`` holds: a regex found on its stderr, or a
        function of its stderr so far. A command that ends first fails the test with its stderr."""
        ready = (lambda err: re.search(when, err) is not None) if isinstance(when, str) else when
        pid = self.start(argv, cwd, env)
        deadline = time.monotonic() + timeout
        while not ready(self.stderr_so_far()):
            ended = select.select([self.proc.stdout], [], [], 0)[0]
            if ended or time.monotonic() > deadline:
                err = self.stderr_so_far()
                if not ended:
                    os.kill(pid, 9)
                self.wait(60)
                raise AssertionError(f"the command {'ended' if ended else 'stalled'} before the moment to "
                                     f"signal it:\n{err[-3000:]}")
            time.sleep(0.02)
        os.kill(pid, sig)
        return self.wait(timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
