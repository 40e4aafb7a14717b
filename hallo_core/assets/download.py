"""Fetching the official weights with huggingface_hub, and what a failed fetch tells the user.

Only called on explicit request (CLI ``download``, ``generate --download``, the pack's download
node). A failure is one line naming every file to place by hand, and leaves no empty folder behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

from ..errors import UserError, one_line
from .layout import ModelFileMissing, files_to_fetch


def download(models: Union[str, Path], which: Union[str, Iterable[str]] = "hallo",
             files: Optional[Iterable[Tuple[str, str]]] = None) -> Path:
    """Fetch components (or a bundle name: hallo, hallo2, hallo2-4k) with huggingface_hub.

    ``files`` ((repo, path) pairs, e.g. the missing part of a ``files_to_fetch`` plan) replaces
    ``which``. Only called on explicit request (CLI ``download``, ``generate --download``, the
    pack's download node).
    """
    root = Path(models).expanduser()
    plan = files_to_fetch(which) if files is None else list(files)
    by_repo: dict = {}
    for repo, f in plan:
        by_repo.setdefault(repo, []).append(f)
    # a failure is one line naming what to place by hand, and leaves no empty folder behind
    with download_guard(root, plan):
        from huggingface_hub import snapshot_download

        root.mkdir(parents=True, exist_ok=True)
        for repo, files in by_repo.items():
            snapshot_download(repo_id=repo, allow_patterns=files, local_dir=str(root))
    # allow_patterns only filters the repo's listing: a file the repo lacks is skipped silently.
    absent = [f"{f} (https://huggingface.co/{repo})" for repo, files in by_repo.items() for f in files
              if not (root / f).is_file()]
    if absent:
        raise ModelFileMissing("the download finished without: " + ", ".join(absent),
                               fix="download them by hand into " + str(root), path=str(root))
    return root


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
    listing = "; ".join(f"https://huggingface.co/{repo}: {', '.join(fs)}" for repo, fs in by_repo.items())
    what = f"download failed: {_network_reason(exc)} ({listing})"
    fix = (f"retry when online, or download those files in a browser and place each at {root}/<its path in "
           f"the repo> (e.g. {root / files[0][1]})" if files else "retry when online")
    return UserError(what, "models", fix)


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
