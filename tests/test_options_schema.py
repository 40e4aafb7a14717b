"""One option schema: every option the CLI and a node both offer has one range and one default.

The CLI side is read from the real argparse parser and the real check; the node side from the
widget dicts nodes/options.py builds (no ComfyUI needed) and, with COMFYUI_PATH, from the real
``define_schema()`` and ``validate_inputs`` of the nodes inside ComfyUI's Python.
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

import pytest

from hallo_core.errors import UserError
from hallo_core.options import CLI, NODE, OPTIONS, check_options
from nodes.options import validate, widget_fields
from tests.comfy_server import run_in_comfy_python

REPO = Path(__file__).resolve().parents[1]
BOTH = sorted(k for k, s in OPTIONS.items() if {CLI, NODE} <= s.hosts)
# the nodes that show schema widgets, and which
NODE_WIDGETS = {
    "Hallo_Sampler": ("seed", "steps", "cfg", "pose_weight", "face_weight", "lip_weight", "scheduler", "fast",
                      "cfg_steps", "low_vram"),
    "Hallo2_LongVideo": ("seed", "steps", "cfg", "pose_weight", "face_weight", "lip_weight", "scheduler",
                         "mask_rate", "fast", "cfg_steps", "low_vram"),
    "Hallo_FaceAnalysis": ("size", "frame", "face_expand_ratio", "no_face", "face", "margin"),
    "Hallo_PasteBack": ("max_side", "feather", "fps"),
    "Hallo2_TemporalUpscale": ("upscale", "fidelity_weight", "smooth_landmarks"),
    "Hallo_MotionFrames": ("mask_rate",),
}


def _cli_actions() -> dict:
    """dest -> argparse action, over generate and upscale."""
    from hallo_core.cli.main import _parser

    subs = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    out = {}
    for name in ("generate", "upscale"):
        for a in subs[name]._actions:
            out.setdefault(a.dest, a)
    return out


def _cli_accepts(key, value) -> bool:
    try:
        check_options({key: value})
        return True
    except UserError:
        return False


def _probes(s):
    if s.choices:
        return list(s.choices) + ["nonsense"]
    unit = s.multiple if s.kind is int else (s.step or 0.01)
    probes = [s.lo, s.hi, s.lo - unit, s.hi + unit, s.default, math.nan, math.inf]
    if s.kind is int:
        probes.append(s.lo + 0.5)
    return probes


def test_the_schema_is_complete_and_consistent():
    assert BOTH, "no option is shared by the CLI and the nodes"
    for key, s in OPTIONS.items():
        assert s.hosts <= {CLI, NODE} and s.hosts, key
        if CLI in s.hosts:
            assert s.help, f"{key}: the CLI's --help needs a line"
        if NODE in s.hosts:
            assert s.tooltip or s.help, f"{key}: a widget needs a tooltip"
        if s.numeric:
            assert s.lo <= s.default <= s.hi and (s.multiple == 1 or s.default % s.multiple == 0), key
            assert _cli_accepts(key, s.default), key
        else:
            assert s.default in s.choices or s.kind is bool, key


@pytest.mark.parametrize("key", BOTH)
def test_every_cli_option_and_its_widget_have_one_range_and_one_default(key):
    s = OPTIONS[key]
    action = _cli_actions()[key]
    w = widget_fields(key)
    assert action.default == s.default
    if s.choices:
        assert tuple(action.choices) == tuple(s.choices)
        assert w["type"] == "COMBO" and w["options"] == [str(c) for c in s.choices]
        assert w["default"] == str(action.default)
    else:
        assert w["default"] == action.default
        assert (w["min"], w["max"]) == (s.lo, s.hi)
    # what each host accepts, value by value: the CLI's check and the node's validate_inputs answer alike
    for v in _probes(s):
        node_value = str(v) if s.choices else v
        assert _cli_accepts(key, v) == (validate(**{w["name"]: node_value}) is True), (key, v)
    if s.numeric:
        assert _cli_accepts(key, s.lo) and _cli_accepts(key, s.hi)
        assert not _cli_accepts(key, s.lo - 1) and not _cli_accepts(key, s.hi + 1)


def test_the_four_disagreements_are_gone():
    """steps, cfg, the three motion weights and mask_rate: one range on both hosts."""
    for key, lo, hi in (("steps", 1, 1000), ("cfg", 0.0, 50.0), ("pose_weight", 0.0, 10.0),
                        ("face_weight", 0.0, 10.0), ("lip_weight", 0.0, 10.0), ("mask_rate", 0.0, 1.0)):
        w = widget_fields(key)
        assert (w["min"], w["max"]) == (lo, hi) == (OPTIONS[key].lo, OPTIONS[key].hi), key
    assert _cli_accepts("mask_rate", 1.0) and validate(mask_rate=1.0) is True


def test_the_errors_name_the_option_in_each_hosts_words():
    from hallo_core.cli.common import words

    with pytest.raises(UserError) as e:
        check_options({"fidelity_weight": 2.0})
    assert e.value.key == "fidelity_weight"
    assert str(e.value.placed(words)).startswith("--fidelity-weight is 2, outside the range it accepts "
                                                 "(--fidelity-weight): give a number from 0 to 1")
    assert validate(fidelity=2.0).startswith("fidelity is 2, outside the range it accepts (fidelity): give a "
                                             "number from 0 to 1")


def test_errors_md_lists_every_option_with_its_range_and_default():
    text = (REPO / "docs" / "errors.md").read_text()
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `(\w+)` \|.*$", text, re.M)}
    for key, s in OPTIONS.items():
        assert key in rows, f"docs/errors.md has no row for {key}"
        cells = [c.strip().replace("`", "") for c in rows[key].strip("|").split("|")]
        default = "on" if s.default is True else "off" if s.default is False else f"{s.default:g}" \
            if isinstance(s.default, float) else str(s.default)
        assert cells[3:5] == [s.accepts, default], (key, cells)
        assert cells[1] == (" ".join(s.cli_flags) if CLI in s.hosts else "-"), (key, cells)
        assert cells[2] == (s.node_name if NODE in s.hosts else "-"), (key, cells)


CHECK_IN_COMFY = """
    ext = importlib.import_module(name + ".nodes.extension")
    ext.setup()
    res = {}
    for cls in ext.node_list():
        schema = cls.define_schema()
        res[schema.node_id] = {}
        for i in schema.inputs:
            d = {a: getattr(i, a, None) for a in ("default", "min", "max", "step", "options")}
            res[schema.node_id][i.id] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}
    S = importlib.import_module(name + ".nodes.sampler").HalloSampler
    LV = importlib.import_module(name + ".nodes.long_video").HalloLongVideo
    F = importlib.import_module(name + ".nodes.face").HalloFaceAnalysis
    U = importlib.import_module(name + ".nodes.upscale").HalloTemporalUpscale
    ok = dict(seed=42, steps=40, cfg=3.5, pose_weight=1.0, face_weight=1.0, lip_weight=1.0)
    res["validate"] = {
        "steps_1000": S.validate_inputs(**dict(ok, steps=1000)), "steps_1001": S.validate_inputs(**dict(ok, steps=1001)),
        "cfg_50": S.validate_inputs(**dict(ok, cfg=50.0)), "cfg_0": S.validate_inputs(**dict(ok, cfg=0.0)),
        "weight_10": S.validate_inputs(**dict(ok, lip_weight=10.0)),
        "weight_11": S.validate_inputs(**dict(ok, lip_weight=11.0)),
        "mask_1": LV.validate_inputs(**ok, mask_rate=1.0, filename_prefix="a"),
        "mask_2": LV.validate_inputs(**ok, mask_rate=2.0, filename_prefix="a"),
        "face_big": F.validate_inputs(size=512, face_expand_ratio=1.2, face_index=1000),
        "fidelity_2": U.validate_inputs(fidelity=2.0, landmark_smoothing=0.0, filename_prefix="a"),
    }
    print(json.dumps(res))
"""


@pytest.fixture(scope="module")
def comfy():
    return run_in_comfy_python(CHECK_IN_COMFY)


@pytest.mark.parametrize("node", sorted(NODE_WIDGETS))
def test_the_real_node_schemas_are_the_schema_widgets(comfy, node):
    inputs = comfy[node]
    for key in NODE_WIDGETS[node]:
        w = widget_fields(key)
        real = inputs[w["name"]]
        for field in ("default", "min", "max", "step", "options"):
            if field in w:
                assert real[field] == w[field], (node, key, field, real[field], w[field])
    # and no widget of a schema option on these nodes escapes the schema
    names = {OPTIONS[k].node_name for k in OPTIONS if NODE in OPTIONS[k].hosts}
    assert {n for n in inputs if n in names} == {widget_fields(k)["name"] for k in NODE_WIDGETS[node]}


def test_the_real_validate_inputs_use_the_schema_ranges(comfy):
    v = comfy["validate"]
    assert v["steps_1000"] is True and v["cfg_50"] is True and v["cfg_0"] is True and v["weight_10"] is True
    assert v["mask_1"] is True
    assert v["steps_1001"].startswith("steps is 1001, outside the range it accepts (steps)")
    assert v["weight_11"].startswith("lip_weight is 11, outside")
    assert v["mask_2"].startswith("mask_rate is 2, outside")
    assert v["face_big"].startswith("face_index is 1000, outside the range it accepts (face_index)")
    assert v["fidelity_2"].startswith("fidelity is 2, outside the range it accepts (fidelity)")
