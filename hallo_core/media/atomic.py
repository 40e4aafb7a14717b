"""Output safety: an output never lands on an input, and a finished file replaces the old one at once.

``check_output_path`` is called before any work: it refuses an output that names or resolves to
an input (through ``..``, symlinks or hard links) or a folder, checks that the folder can be
written, and refuses a name whose extension says another container than the one written (an
H.264 mp4 named ``talk.gif`` would open in no viewer that trusts the name). ``atomic_output`` writes to a temporary
name in the same folder and renames it over the final name only once the file is complete, so an
existing video is kept until the new one exists in full. The streamed modes (the CLI's generate,
the nodes' streamed file) write under the final name, because the file must play mid-run; they
still go through ``check_output_path`` first.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Dict, Iterable, Iterator, Optional, Union

from ..errors import OutputError, ref

PathLike = Union[str, os.PathLike]
MP4_SUFFIXES = (".mp4", ".m4v", ".mov")  # containers an MP4 file can be named and still play as one


def _abs(p: PathLike) -> Path:
    # resolve(strict=False) follows every symlink that exists and removes "..", so two spellings of
    # one file compare equal; expanduser first so "~/x" is the user's file.
    return Path(os.path.expanduser(os.fspath(p))).resolve(strict=False)


def _same_file(a: Path, b: Path) -> bool:
    if _abs(a) == _abs(b):
        return True
    try:
        return os.path.samefile(a, b)  # hard links (and bind mounts) share the inode
    except OSError:
        return False


def _is_within(p: Path, folder: Path) -> bool:
    # both spellings: resolved, and as written (a models folder of links into the Hugging Face
    # cache resolves elsewhere, yet writing through its path would replace the cached weights)
    lexical = (Path(os.path.abspath(p)), Path(os.path.abspath(folder)))
    for a, b in ((_abs(p), _abs(folder)), lexical):
        try:
            a.relative_to(b)
            return True
        except ValueError:
            pass
    return False


def check_output_path(out: PathLike, inputs: Optional[Dict[str, Union[PathLike, Iterable[PathLike], None]]] = None,
                      key: str = "out", suffixes: Iterable[str] = MP4_SUFFIXES,
                      kind: str = "an MP4 video (H.264 + AAC)") -> None:
    """Refuse an output that would destroy an input, that cannot be written, or that is misnamed.

    Args:
        out: the output path the user gave.
        inputs: ``{"image": path, "models": folder, ...}`` by input key; a value may be one path or
            several. A folder input refuses any existing file inside it (model files are such
            files), and the folder itself.
        key: the output's input key (``out``, ``output``, ``dst``), for the message.
        suffixes: the extensions that say what is written (the first is suggested).
    Raises:
        OutputError naming the clash and how to fix it.
    """
    raw = os.fspath(out) if out is not None else ""
    if not str(raw).strip():
        raise OutputError("no output file given", key, "give a file name such as out.mp4")
    path = Path(os.path.expanduser(raw))
    if raw.endswith((os.sep, "/")) or path.is_dir():
        raise OutputError(f"{raw} is a folder, not a file", key,
                        f"name a file inside it, e.g. {path / 'out.mp4'}")
    if path.exists() and not path.is_file():
        raise OutputError(f"{raw} exists and is not a regular file", key, "choose another output file name")
    for name, value in (inputs or {}).items():
        values = [] if value is None else ([value] if isinstance(value, (str, os.PathLike)) else list(value))
        for v in values:
            v = Path(os.path.expanduser(os.fspath(v)))
            if v.is_dir():
                if _abs(path) == _abs(v) or (_is_within(path, v) and path.exists()):
                    raise OutputError(f"the output {raw} would overwrite a file of the {ref(name)} folder {v}", key,
                                      "write the video somewhere outside the models folder")
                continue
            if _same_file(path, v):
                raise OutputError(f"the output {raw} is the {ref(name)} file {v}", key,
                                  "choose another output file name; inputs are never overwritten")
    # The first existing ancestor decides whether the folders can be made and the file written.
    parent = _abs(path).parent
    probe = parent
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(f"{probe} is a file, so the folder {parent} cannot be made", key,
                          "choose an output in an existing folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"the folder {probe} is not writable", key, "choose an output in a folder you can write")
    if path.exists() and not os.access(path, os.W_OK) and not os.access(parent, os.W_OK):
        raise OutputError(f"{raw} is read-only", key, "choose another output file name")
    suffixes = tuple(s.lower() for s in suffixes)
    if suffixes and path.suffix.lower() not in suffixes:
        ext = path.suffix or "no extension"
        raise OutputError(f"{raw} has {ext}, but the file written is {kind}", key,
                          f"name it {path.with_suffix(suffixes[0]).name} ({', '.join(suffixes)})")


def temp_path_for(final: PathLike) -> Path:
    """A hidden name in the final file's folder (so the rename stays on one file system), with the
    final suffix kept because some writers pick the container from it."""
    final = Path(final)
    return final.with_name(f".{final.stem}.partial-{os.getpid()}{final.suffix}")


@contextlib.contextmanager
def atomic_output(final: PathLike, temp: Optional[PathLike] = None) -> Iterator[Path]:
    """Yield a temporary path; when the block ends normally it is renamed to ``final`` (an existing
    file there is replaced only then). On any exception, interrupts included, the temporary file is
    removed and ``final`` is left as it was.

    ``temp``: the temporary name, for a writer whose leftovers after a hard kill must be found again
    (the resume checkpoint's ``.tmp``); default :func:`temp_path_for`. It must be in ``final``'s folder.
    """
    final = Path(final)
    made = [d for d in (final.parent, *final.parent.parents) if not d.exists()]  # deepest first
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(temp) if temp is not None else temp_path_for(final)
    try:
        yield tmp
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        for d in made:  # the folders made for it go too, when nothing else was put there
            with contextlib.suppress(OSError):
                d.rmdir()
        raise
    if not tmp.is_file():
        raise RuntimeError(f"atomic_output: nothing was written to {tmp}")
    os.replace(tmp, final)


__all__ = ["check_output_path", "atomic_output", "temp_path_for", "MP4_SUFFIXES"]
