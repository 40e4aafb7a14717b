"""User errors: one line that says what is wrong, where, and how to fix it.

A :class:`UserError` is a mistake in what the user gave (a path, a file, an option), never an
internal fault. The CLI prints it as ``error: <what> (<where>): <how to fix>`` and exits with
:data:`EXIT_USER`; the nodes raise it as the node error with the same text. Anything else that
escapes is a real fault and keeps its traceback.
"""

from __future__ import annotations

from typing import Optional

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
    from .assets.layout import ModelFileMissing

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


__all__ = ["EXIT_USER", "EXIT_SIGINT", "EXIT_SIGTERM", "UserError", "one_line", "as_user_error"]
