"""What the subcommands share: the options generated from the schema, the CLI's words for the
engine's input keys, number parsing, device and dtype names, printed findings, fetching."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..assets import layout as models_dir
from ..errors import UserError, fill
from ..options import OPTIONS, Spec

DTYPE_NAMES = ("bf16", "fp16", "fp32")
# generate runs without these: built-in SD1.5 UNet values, no vocal separation
OPTIONAL_COMPONENTS = ("unet_config", "audio_separator")
# the layout table is plain Python (no torch), so the names download accepts come from it directly
DOWNLOAD_NAMES = {"bundles": tuple(models_dir.BUNDLES), "components": tuple(models_dir.COMPONENTS)}


# How the CLI names the engine's input keys (hallo_core.errors.UserError.key); an option's key is
# named by its flag from the schema.
INPUTS = {"image": "--image", "audio": "--audio", "out": "--out", "models": "--models", "device": "--device",
          "resume": "--resume", "input": "--input", "output": "--output", "paste_into": "--paste-into",
          "framing": "--framing", "which": "--which", "src": "src", "dst": "dst", "install": "install"}


def words(key: str) -> str:
    """The CLI's name for an input key: ``image`` -> ``--image``, ``pose_weight`` -> ``--pose-weight``."""
    if key in INPUTS:
        return INPUTS[key]
    return OPTIONS[key].cli_name if key in OPTIONS else key


def add_options(p: argparse.ArgumentParser, keys) -> None:
    """The schema's options ``keys`` (those the CLI shows) as arguments of ``p``; the range checks
    happen after parsing (:func:`hallo_core.options.check_options`), so a bad value is named with
    what the option accepts."""
    for key in keys:
        s = OPTIONS[key]
        if "cli" not in s.hosts:
            continue
        if s.kind is bool:
            p.add_argument(*s.cli_flags, dest=key, action="store_true", help=s.help)
        elif s.choices:
            p.add_argument(*s.cli_flags, dest=key, default=s.default, choices=s.choices, help=s.help,
                           type=_choice_type(s))
        else:
            p.add_argument(*s.cli_flags, dest=key, type=number, default=s.default, help=_help(s))
        for old in s.aliases:
            alias(p, old, key, **({"type": number} if s.numeric else {}))


def _choice_type(s: Spec):
    """How argparse reads a choice: the kind, with the hidden value aliases read as their choice
    (the listed choices stay the schema's own tuple)."""
    if not s.value_aliases:
        return s.kind if s.kind is not str else None
    names = dict(s.value_aliases)

    def read(text: str):
        return names.get(text, text) if s.kind is str else s.kind(names.get(text, text))

    read.__name__ = s.key  # argparse names the type in its "invalid <type> value" line
    return read


def _help(s: Spec) -> str:
    rng = f"{s.lo:g}..{s.hi:g}" if s.kind is float else f"{int(s.lo)}..{int(s.hi)}"
    return f"{s.help} [{rng}]"


def number(text: str):
    """Any number, NaN and inf included: the range checks (hallo_core.options) then name the option
    and what it accepts, which argparse's ``invalid int value`` does not."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def dtype(name: str):
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]


def device(name: str) -> str:
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def alias(p: argparse.ArgumentParser, old: str, dest: str, **kw) -> None:
    """Another spelling (upstream's video_sr.py style) that parses but is not shown in --help."""
    p.add_argument(old, dest=dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kw)


def print_findings(pf) -> None:
    for w in pf.warnings:
        print(f"warning: {fill(w, words)}", file=sys.stderr)
    for n in pf.notes:
        print(f"note: {n}", file=sys.stderr)


def fetch(models: str, which) -> Path:
    from ..assets.download import download, download_failure
    from ..assets.layout import files_to_fetch

    try:
        plan = files_to_fetch(which)
    except ValueError as e:
        raise UserError(str(e), "which", "give names from `hallo download --help`") from None
    try:
        return download(models, files=plan)
    except (UserError, models_dir.ModelFileMissing):
        raise
    except Exception as e:  # an HTTP stack's error that escaped the download's own guard
        raise download_failure(e, Path(models).expanduser().absolute(), plan) from e
