"""The nodes' side of the option schema (hallo_core.options): widgets, their checks, and how a node
names the engine's input keys in an error.

Nothing here imports ComfyUI at load: :func:`widget_fields` gives each widget as a plain dict, so
the widgets are tested against the CLI's options without ComfyUI; :func:`inputs` turns them into
``comfy_api`` inputs when a node's schema is built.
"""

from __future__ import annotations

from typing import Any, Dict, List, Union

from hallo_core.errors import UserError, fill
from hallo_core.options import NODE, OPTIONS, check_options

# How the nodes name the engine's input keys that are not options (those are named by the schema).
INPUTS = {"out": "filename_prefix", "output": "filename_prefix", "input": "frames", "models": "models/hallo folder",
          "device": "ComfyUI's device", "install": "install", "resume": "resume"}
_BY_NODE_NAME = {s.node_name: k for k, s in OPTIONS.items() if NODE in s.hosts}
_TYPES = {int: "INT", float: "FLOAT", bool: "BOOLEAN"}


def words(key: str) -> str:
    """A node's name for an input key: ``face`` -> ``face_index``, ``out`` -> ``filename_prefix``."""
    if key in INPUTS:
        return INPUTS[key]
    return OPTIONS[key].node_name if key in OPTIONS else key


def node_error(e: UserError) -> UserError:
    """``e`` as the nodes raise it: a UserError with the same what and fix, naming its input as the
    node does (the engine's finer kinds matter to Python callers, not in ComfyUI's error box)."""
    return UserError(e.what, e.key, e.fix).placed(words)


def node_text(text: str) -> str:
    """A warning of the engine with its ``{=key}`` references in the node's words."""
    return fill(text, words)


def widget_fields(key: str, **extra: Any) -> Dict[str, Any]:
    """The widget of option ``key`` as a dict: ``type`` (INT, FLOAT, BOOLEAN, COMBO), ``name`` and the
    keyword arguments of its comfy_api input. ``extra`` adds presentation (``optional``,
    ``control_after_generate``); range and default always come from the schema."""
    s = OPTIONS[key]
    if NODE not in s.hosts:
        raise KeyError(f"{key} is not an option of the nodes")
    d: Dict[str, Any] = {"name": s.node_name, "tooltip": s.tooltip or s.help}
    if s.choices:
        d.update(type="COMBO", options=[str(c) for c in s.choices], default=str(s.default))
    else:
        d.update(type=_TYPES[s.kind], default=s.default)
    if s.numeric:
        d.update(min=s.kind(s.lo), max=s.kind(s.hi))
        if s.step is not None:
            d["step"] = s.kind(s.step)
        if s.round is not None:
            d["round"] = s.round
    d.update(extra)
    return d


def inputs(*keys: str, **extra: Dict[str, Any]) -> List[Any]:
    """comfy_api inputs of the options ``keys``; ``extra`` maps a key to its presentation dict."""
    from comfy_api.latest import io

    kinds = {"INT": io.Int, "FLOAT": io.Float, "BOOLEAN": io.Boolean, "COMBO": io.Combo}
    out = []
    for key in keys:
        f = widget_fields(key, **extra.get(key, {}))
        out.append(kinds[f.pop("type")].Input(f.pop("name"), **f))
    return out


def checked(**values: Any) -> Dict[str, Any]:
    """The widget values (by widget name) checked and in the engine's types, keyed by option key;
    None values are left out. Raises the UserError in the node's words."""
    keyed = {_BY_NODE_NAME[n]: v for n, v in values.items() if v is not None and n in _BY_NODE_NAME}
    try:
        return check_options(keyed)
    except UserError as e:
        raise node_error(e) from None


def validate(**values: Any) -> Union[bool, str]:
    """``validate_inputs``' answer: True, or the error line naming the widget."""
    try:
        checked(**values)
    except UserError as e:
        return str(e)
    return True


__all__ = ["INPUTS", "words", "node_error", "node_text", "widget_fields", "inputs", "checked", "validate"]
