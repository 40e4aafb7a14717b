"""A models folder of symlinks to a shared tiny one, so a test may damage one file cheaply.

The tiny models folder is about 460 MB (the audio projection keeps its released size), too
much to copy per test. ``mirror`` links every file; ``own`` turns one link into a private copy
before it is changed, so the shared folder is never written through a link.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def mirror(src: Path, dst: Path) -> Path:
    for dirpath, _dirs, files in os.walk(src):
        rel = Path(dirpath).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for f in files:
            os.symlink(Path(dirpath) / f, dst / rel / f)
    return dst


def own(path: Path) -> Path:
    """Make ``path`` a private regular file (a copy of the link's target) and return it."""
    path = Path(path)
    if path.is_symlink():
        target = path.resolve()
        path.unlink()
        shutil.copyfile(target, path)
    return path


def replace(path: Path, data: bytes) -> Path:
    """Write ``data`` as a new file at ``path`` (never through a link)."""
    path = Path(path)
    if path.is_symlink() or path.exists():
        path.unlink()
    path.write_bytes(data)
    return path


_SHARED = {}


def shared_tiny_models() -> Path:
    """The tiny models folder, built once per test process (removed at exit)."""
    if "root" not in _SHARED:
        import atexit
        import tempfile

        from .models_folder import build_models_dir

        tmp = Path(tempfile.mkdtemp(prefix="hallo_tiny_models_"))
        atexit.register(shutil.rmtree, tmp, True)
        _SHARED["root"] = build_models_dir(tmp / "models")
    return _SHARED["root"]


def tiny_models(dst: Path, faces=None) -> Path:
    """``build_models_dir(dst, faces=faces)``'s folder (seed 0, the same bytes) as a mirror of the
    shared one: the 460 MB are written once per test process instead of once per test module.
    ``faces``: what the tiny SCRFD reports; that folder's two small graphs are then private files."""
    dst = mirror(shared_tiny_models(), Path(dst))
    if faces is not None:
        from .models_folder import write_tiny_face_models

        for f in (dst / "face_analysis" / "models").iterdir():
            f.unlink()  # never written through a link
        write_tiny_face_models(dst, faces=faces)
    return dst
