"""Fetching the official weights with huggingface_hub, and what a failed fetch tells the user.

Only called on explicit request (CLI ``download``, ``generate --download``, the pack's download
node). A failure is one line naming every file to place by hand (a long list in a file the line
names), and leaves no empty folder behind.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

from ..errors import UserError, one_line
from .layout import files_to_fetch


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
        with _quiet_local_dir_fallback():
            for repo, files in by_repo.items():
                snapshot_download(repo_id=repo, allow_patterns=files, local_dir=str(root))
        # snapshot_download answers an unreachable Hub with the existing local_dir, and its
        # allow_patterns skip a file the repo lacks: both end here, with planned files absent
        absent = [(repo, f) for repo, files in by_repo.items() for f in files if not (root / f).is_file()]
        if absent:
            cause = _hub_unreachable(dict.fromkeys(repo for repo, _ in absent))
            if cause is not None:
                raise download_failure(cause, root.absolute(), absent) from cause
            raise files_error("the download finished without files their repository does not hold", root.absolute(),
                              absent, "check the repository pages, or place them by hand")
    _prune_file_list(root)
    return root


@contextlib.contextmanager
def _quiet_local_dir_fallback():
    """Without the Hub, snapshot_download warns that it returns the existing folder; the error line
    below says why instead, and stays the only line."""
    log = logging.getLogger("huggingface_hub._snapshot_download")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _hub_unreachable(repos: Iterable[str]) -> Optional[BaseException]:
    """The error of the first repo the Hub does not answer for, or None when it answers for all."""
    from huggingface_hub import HfApi

    for repo in repos:
        try:
            HfApi().model_info(repo, revision="main")
        except Exception as e:  # offline mode, no connection, a missing repo: the caller names it
            return e
    return None


def download_file(repo: str, rel: str, dest: Union[str, Path]) -> Path:
    """Fetch one file of ``repo`` to ``dest``, a place other than its path in the repo layout
    (ComfyUI's models/upscale_models/NAME). It is staged in a hidden folder beside ``dest`` and
    moved into place once complete; a failed try keeps the staged part for the next one."""
    dest = Path(dest).expanduser().absolute()
    staging = dest.parent / f".{dest.name}.download"
    try:
        download(staging, files=[(repo, rel)])
    except UserError as e:
        raise UserError(e.what.replace(str(staging), str(dest.parent)), "models",
                        f"retry when online, or download {file_url(repo, rel)} in a browser and save it as {dest}") from e
    os.replace(staging / rel, dest)
    shutil.rmtree(staging, ignore_errors=True)  # huggingface_hub's metadata of the staged copy
    return dest


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


LIST_NAME = "hallo-missing-files.txt"
INLINE_LIMIT = 300  # longer file lists go to LIST_NAME: the error line stays whole and readable


def file_url(repo: str, path: str) -> str:
    return f"https://huggingface.co/{repo}/resolve/main/{path}"


def write_file_list(root: Path, files: Sequence[Tuple[str, str]]) -> Optional[Path]:
    """``URL  ->  destination`` for each file, in ``root`` (the folder the user fills) or, when
    that cannot be written, the temp folder; None when neither can."""
    text = "".join(f"{file_url(repo, f)}  ->  {root / f}\n" for repo, f in files)
    for folder in (root, Path(tempfile.gettempdir())):
        target = folder / (LIST_NAME if folder == root else f"{root.name or 'models'}-{LIST_NAME}")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            target.write_text("# fetch each URL and save it at the path after the arrow\n" + text, encoding="utf-8")
            return target
        except OSError:
            continue
    return None


def _prune_file_list(root: Path) -> None:
    """After a download: drop the listed files that are now in place, and the list once it is empty."""
    target = root / LIST_NAME
    if not target.is_file():
        return
    with contextlib.suppress(OSError):
        lines = target.read_text(encoding="utf-8").splitlines()
        left = [ln for ln in lines[1:] if "  ->  " in ln and not Path(ln.split("  ->  ", 1)[1]).is_file()]
        if left:
            target.write_text("\n".join(lines[:1] + left) + "\n", encoding="utf-8")
        else:
            target.unlink()


def files_error(what: str, root: Path, files: Sequence[Tuple[str, str]], fix: str) -> UserError:
    """``what`` for ``files`` (repo, path) under ``root``: the list in the line when it fits, else in
    :data:`LIST_NAME` (each file's URL and destination), which the line names instead of cutting
    the list short."""
    by_repo: Dict[str, List[str]] = {}
    for repo, f in files:
        by_repo.setdefault(repo, []).append(f)
    listing = "; ".join(f"https://huggingface.co/{repo}: {', '.join(fs)}" for repo, fs in by_repo.items())
    listed = write_file_list(root, files) if len(listing) > INLINE_LIMIT else None
    if listed is None:
        return UserError(f"{what} ({listing})", "models",
                         f"{fix}, or download those files in a browser and place each at {root}/<its path in the "
                         f"repo> (e.g. {root / files[0][1]})")
    repos = " and ".join(f"https://huggingface.co/{repo}" for repo in by_repo)
    return UserError(f"{what} ({len(files)} files of {repos}, every one listed in {listed})", "models",
                     f"{fix}, or fetch each URL in {listed} in a browser and save it at the path beside it "
                     f"(e.g. {root / files[0][1]})")


def download_failure(exc: BaseException, root: Union[str, os.PathLike],
                     files: Sequence[Tuple[str, str]]) -> UserError:
    """One line for a failed download: the repos and files, where they go, how to place them by hand."""
    what = "download failed: " + _network_reason(exc)
    if not files:
        return UserError(what, "models", "retry when online")
    return files_error(what, Path(root), files, "retry when online")


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
