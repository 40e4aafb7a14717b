"""Faults a test puts into one CLI process (``WarmCli.run(..., setup=["tests.support.faults:NAME"])``).

Each changes the process's environment, not the code under test: the disk that fills up is
Python's own ``open`` returning a file whose writes fail with ENOSPC, as a full file system does.
"""

from __future__ import annotations

import builtins
import errno
import os


class _FillsUp:
    """A writable file on a disk with ``room`` bytes left: the write that needs more fails with ENOSPC."""

    def __init__(self, f, room: int = 64):
        self._f, self._room = f, room

    def write(self, data) -> int:
        data = bytes(data)
        if len(data) > self._room:
            self._f.write(data[: self._room])
            self._f.flush()
            self._room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._room -= len(data)
        return self._f.write(data)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._f.close()

    def __getattr__(self, name):
        return getattr(self._f, name)


def disk_full_at_resume_checkpoint() -> None:
    """The disk fills up while a resume checkpoint (``*.resume.pt.tmp``) is being written."""
    real_open = builtins.open

    def open_(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        if isinstance(file, (str, os.PathLike)) and os.fspath(file).endswith(".resume.pt.tmp") and "w" in mode:
            return _FillsUp(f)
        return f

    builtins.open = open_
