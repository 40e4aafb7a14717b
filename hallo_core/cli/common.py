"""What the subcommands share: number parsing, device and dtype names, printed findings, fetching."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..assets import layout as models_dir
from ..errors import UserError

DTYPE_NAMES = ("bf16", "fp16", "fp32")
# generate runs without these: built-in SD1.5 UNet values, no vocal separation
OPTIONAL_COMPONENTS = ("unet_config", "audio_separator")
# the layout table is plain Python (no torch), so the names download accepts come from it directly
DOWNLOAD_NAMES = {"bundles": tuple(models_dir.BUNDLES), "components": tuple(models_dir.COMPONENTS)}


def number(text: str):
    """Any number, NaN and inf included: the range checks (hallo_core.checks.OPTIONS) then name
    the option and what it accepts, which argparse's ``invalid int value`` does not."""
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
    """An old spelling that still parses but is not shown in --help."""
    p.add_argument(old, dest=dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kw)


def print_findings(pf) -> None:
    for w in pf.warnings:
        print(f"warning: {w}", file=sys.stderr)
    for n in pf.notes:
        print(f"note: {n}", file=sys.stderr)


def fetch(models: str, which) -> Path:
    from ..assets.download import download, download_failure
    from ..assets.layout import files_to_fetch

    try:
        plan = files_to_fetch(which)
    except ValueError as e:
        raise UserError(str(e), "--which", "give names from `hallo download --help`") from None
    try:
        return download(models, files=plan)
    except (UserError, models_dir.ModelFileMissing):
        raise
    except Exception as e:  # an HTTP stack's error that escaped the download's own guard
        raise download_failure(e, Path(models).expanduser().absolute(), plan) from e
