"""User errors: what went wrong, which input it concerns, and how to fix it.

A :class:`UserError` is a mistake in what the user gave (a path, a file, an option) or in the
machine it runs on (a full disk, a missing package), never an internal fault. It carries three
fields: ``what``, ``key`` (the input it concerns, as an abstract name: ``image``, ``audio``,
``models``, ``out``, ``install`` or an option of :mod:`hallo_core.options` such as ``steps``) and
``fix``. Each host names the input in its own words through one mapping: the CLI prints
``error: <what> (--image): <how to fix>`` and exits with :data:`EXIT_USER`, a node raises the
same line naming its ``image`` input. ``what`` and ``fix`` may name other inputs as ``{=key}``;
the host's words replace them too. Anything else that escapes is a real fault and keeps its
traceback.

This module imports nothing from hallo_core, so every layer can raise these without an import
cycle, and the CLI's error printer works without torch installed.
"""

from __future__ import annotations

import copy
import re
from typing import Callable, Optional

EXIT_USER = 2  # bad input: nothing was computed, or the partial output the mode promises is kept
EXIT_SIGINT = 130  # the shell convention (128 + signal number)
EXIT_SIGTERM = 143

Words = Callable[[str], str]  # an input key -> how a host names it
_REF = re.compile(r"\{=(\w+)\}")


def one_line(text: object, limit: int = 400) -> str:
    """``text`` squeezed onto one line (messages of libraries span several), at most ``limit`` chars."""
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _as_is(key: str) -> str:
    return key


def fill(text: str, words: Words = _as_is) -> str:
    """``text`` with every ``{=key}`` replaced by the host's name for that input (warnings use it too)."""
    return _REF.sub(lambda m: words(m.group(1)), text)


def ref(key: str) -> str:
    """How a message names input ``key``: ``{=key}``, or ``key`` as it is when it already is the
    host's words (``--speaker 0=alice.wav``)."""
    return f"{{={key}}}" if key.isidentifier() else key


class UserError(ValueError):
    """A user mistake: ``str()`` is ``<what> (<input>): <how to fix>`` on one line.

    ``key`` defaults to the class's :attr:`default_key`. Subclasses add fields of their own
    (a path, a component) as keyword arguments. A ValueError, so code that catches ValueError
    for bad input keeps working.
    """

    default_key = ""

    def __init__(self, what: str, key: Optional[str] = None, fix: str = "", **fields):
        self.what, self.fix = one_line(what), one_line(fix)
        self.key = self.default_key if key is None else str(key)
        self.words: Words = _as_is
        for name, value in fields.items():
            setattr(self, name, value)
        super().__init__(str(self))

    def render(self, words: Words) -> str:
        s = fill(self.what, words)
        if self.key:
            s += f" ({words(self.key)})"
        if self.fix:
            s += f": {fill(self.fix, words)}"
        return s

    def __str__(self) -> str:
        return self.render(self.words)

    def placed(self, words: Words) -> "UserError":
        """A copy that names its inputs in a host's ``words`` (the original is left as it is)."""
        e = copy.copy(self)
        e.words = words
        e.args = (str(e),)
        return e

    @property
    def cli_line(self) -> str:
        return f"error: {self}"


class ImageError(UserError):
    """The picture cannot be used as given (cannot be decoded, blank, NaN pixels)."""

    default_key = "image"


class FaceError(ImageError):
    """The picture holds no face that can be animated, or not the one asked for."""


class AudioError(UserError):
    """The audio cannot be used as given."""

    default_key = "audio"


class ModelMissingError(UserError, FileNotFoundError):
    """A model file or folder is absent. Fields: ``component`` (the layout's name), ``path``."""

    default_key = "models"
    component: str = ""
    path: str = ""


class WeightsError(UserError):
    """A model file is present but unusable: unreadable, unsafe, or made for another model. Field: ``path``."""

    default_key = "models"
    path: str = ""


class ResumeMismatchError(UserError):
    """A resume checkpoint that belongs to another job (other inputs, settings or weights)."""

    default_key = "resume"


class OutputError(UserError):
    """The output cannot be written there (a clash with an input, no space, no permission)."""

    default_key = "out"


class InstallError(UserError):
    """A package the job needs cannot be imported."""

    default_key = "install"


__all__ = ["EXIT_USER", "EXIT_SIGINT", "EXIT_SIGTERM", "Words", "UserError", "ImageError", "FaceError",
           "AudioError", "ModelMissingError", "WeightsError", "ResumeMismatchError", "OutputError", "InstallError",
           "one_line", "fill", "ref"]
