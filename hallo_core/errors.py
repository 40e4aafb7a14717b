"""User errors: one line that says what is wrong, where, and how to fix it.

A :class:`UserError` is a mistake in what the user gave (a path, a file, an option), never an
internal fault. The CLI prints it as ``error: <what> (<where>): <how to fix>`` and exits with
:data:`EXIT_USER`; the nodes raise it as the node error with the same text. Anything else that
escapes is a real fault and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

EXIT_USER = 2  # bad input: nothing was computed, or the partial output the mode promises is kept
EXIT_SIGINT = 130  # the shell convention (128 + signal number)
EXIT_SIGTERM = 143


def one_line(text: object, limit: int = 400) -> str:
    """``text`` squeezed onto one line (messages of libraries span several), at most ``limit`` chars."""
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


class UserError(ValueError):
    """A user mistake: ``str()`` is ``<what> (<where>): <how to fix>`` on one line.

    A ValueError so that code which already catches ValueError for bad input keeps working.
    """

    def __init__(self, what: str, where: object = "", fix: str = ""):
        self.what, self.where, self.fix = one_line(what), one_line(where), one_line(fix)
        super().__init__(str(self))

    def __str__(self) -> str:
        s = self.what
        if self.where:
            s += f" ({self.where})"
        if self.fix:
            s += f": {self.fix}"
        return s

    @property
    def cli_line(self) -> str:
        return f"error: {self}"


def as_user_error(exc: BaseException) -> Optional[UserError]:
    """The user-facing form of exceptions that are known to come from bad input, else None.

    Used by the CLI's top level: a None answer means an internal fault (traceback stays).
    """
    if isinstance(exc, UserError):
        return exc
    from .io.checkpoints import CheckpointError
    from .models_dir import ModelFileMissing

    if isinstance(exc, ModelFileMissing):
        return UserError(str(exc).split(". ")[0], "models folder",
                         "download it with `python -m hallo_core download --models MODELS` or place it by hand")
    if isinstance(exc, CheckpointError):
        text = one_line(exc)
        return UserError(text, "weights file", "download the file again or point --models at the right folder")
    try:
        from .face.preprocess import NoFaceError
    except ImportError:  # the face front end is optional at import time
        NoFaceError = ()  # type: ignore[assignment]
    if NoFaceError and isinstance(exc, NoFaceError):
        return UserError("no face found in the reference image", "--image",
                         "use a clear, frontal portrait (one face, eyes visible)")
    return None


# -- downloads ---------------------------------------------------------------------------------

def _network_reason(exc: BaseException) -> str:
    """A short cause for huggingface_hub / requests / socket failures (walks the cause chain)."""
    seen = set()
    e: Optional[BaseException] = exc
    names = []
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        names.append(type(e).__name__)
        e = e.__cause__ or e.__context__
    text = " ".join(names)
    if any(n in text for n in ("RepositoryNotFoundError", "GatedRepoError")):
        return "the repository was not found or needs a login"
    # network first: huggingface_hub wraps a failed connection in LocalEntryNotFoundError
    if any(n in text for n in ("ConnectionError", "ConnectError", "Timeout", "gaierror", "NetworkError",
                               "MaxRetryError", "SSLError", "ProxyError", "RemoteProtocolError")):
        return "no connection to huggingface.co"
    if "LocalEntryNotFoundError" in text or "OfflineModeIsEnabled" in text:
        return "Hugging Face cannot be reached (offline, or HF_HUB_OFFLINE is set)"
    if "EntryNotFoundError" in text:
        return "a file is not in the repository"
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full"
    if isinstance(exc, PermissionError):
        return "the models folder is not writable"
    return f"{type(exc).__name__}: {one_line(exc, 160)}"


def download_failure(exc: BaseException, root: Union[str, os.PathLike],
                     files: Sequence[Tuple[str, str]]) -> UserError:
    """One line for a failed download: the repos and files, where they go, how to place them by hand."""
    root = Path(root)
    by_repo: Dict[str, List[str]] = {}
    for repo, f in files:
        by_repo.setdefault(repo, []).append(f)
    what = "download failed: " + _network_reason(exc)
    where = "; ".join(f"https://huggingface.co/{repo}: {', '.join(fs)}" for repo, fs in by_repo.items())
    fix = (f"retry when online, or download those files in a browser and place each at {root}/<its path in "
           f"the repo> (e.g. {root / files[0][1]})" if files else "retry when online")
    return UserError(what, where, fix)


def _existing_dirs(root: Path) -> set:
    if not root.is_dir():
        return set()
    return {Path(d) for d, _, _ in os.walk(root)}


def _remove_new_empty_dirs(root: Path, before: set) -> None:
    """Remove empty folders under ``root`` (``root`` included) that did not exist before, deepest
    first; folders that existed, and every file, are left alone."""
    if root.is_dir():
        for d in sorted((Path(x) for x, _, _ in os.walk(root)), key=lambda p: -len(p.parts)):
            if d not in before:
                with contextlib.suppress(OSError):
                    os.rmdir(d)  # refuses a non-empty folder, which is what is wanted
    # parents of root that mkdir(parents=True) created
    q = root.parent
    while q not in before and q != q.parent and q.is_dir():
        with contextlib.suppress(OSError):
            os.rmdir(q)
        if q.exists():
            break
        q = q.parent


@contextlib.contextmanager
def download_guard(root: Union[str, os.PathLike], files: Sequence[Tuple[str, str]]):
    """Around a download: a failure becomes :func:`download_failure`'s UserError, and the folders
    the download created are removed again when they are empty (huggingface_hub also leaves a
    ``.cache/huggingface`` tree under ``local_dir``; its empty parts go too).

    Folders that existed before are never removed, and no file is ever deleted.
    """
    root = Path(root).expanduser().absolute()
    before = _existing_dirs(root)
    p = root.parent
    while True:  # the parents that exist now: never removed
        if p.exists():
            before.add(p)
        if p.parent == p:
            break
        p = p.parent
    try:
        yield root
    except (KeyboardInterrupt, UserError):
        _remove_new_empty_dirs(root, before)
        raise
    except Exception as e:
        _remove_new_empty_dirs(root, before)
        raise download_failure(e, root, files) from e


__all__ = ["EXIT_USER", "EXIT_SIGINT", "EXIT_SIGTERM", "UserError", "one_line", "as_user_error",
           "download_failure", "download_guard"]
