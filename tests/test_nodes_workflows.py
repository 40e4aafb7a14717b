"""The example workflows (UI format) and their API-format twins must describe the same graph."""

import json
from pathlib import Path

import pytest

from tests import workflow_format as wf

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "example_workflows").glob("*.json"))
NAMES = [p.stem for p in EXAMPLES]


def test_three_examples_with_twins_and_thumbnails():
    assert set(NAMES) == {"hallo_portrait_to_video", "hallo2_long_video", "hallo2_long_video_upscaled"}
    for name in NAMES:
        assert (REPO / "tests" / "workflows" / f"{name}.api.json").is_file(), name
        # ComfyUI 0.8.0's template browser (frontend 1.35) asks for <name>.jpg for custom-node templates
        thumb = REPO / "example_workflows" / f"{name}.jpg"
        assert thumb.is_file() and thumb.read_bytes()[:3] == b"\xff\xd8\xff", f"{thumb} is not a JPEG"


@pytest.mark.parametrize("name", NAMES)
def test_api_twin_matches_ui_workflow(name):
    ui = wf.load(REPO / "example_workflows" / f"{name}.json")
    api = wf.load(REPO / "tests" / "workflows" / f"{name}.api.json")
    converted = wf.ui_to_api(ui)
    assert set(converted) == set(api), "different node ids"
    for nid, node in api.items():
        assert converted[nid]["class_type"] == node["class_type"], nid
        assert converted[nid]["inputs"] == node["inputs"], f"node {nid} ({node['class_type']}) inputs differ"


@pytest.mark.parametrize("name", NAMES)
def test_ui_workflow_is_consistent(name):
    ui = wf.load(REPO / "example_workflows" / f"{name}.json")
    assert ui["version"] == 0.4
    ids = {n["id"] for n in ui["nodes"]}
    assert ui["last_node_id"] == max(ids) and ui["last_link_id"] == max(link[0] for link in ui["links"])
    by_id = {n["id"]: n for n in ui["nodes"]}
    for link_id, src, slot, dst, dst_slot, typ in ui["links"]:
        out = by_id[src]["outputs"][slot]
        assert link_id in out["links"] and out["type"] == typ
        inp = by_id[dst]["inputs"][dst_slot]
        assert inp["link"] == link_id
    # each node's output links point back at links that exist
    all_links = {link[0] for link in ui["links"]}
    for n in ui["nodes"]:
        for out in n["outputs"]:
            assert set(out["links"] or []) <= all_links
    # every model the graph loads is listed with a download link
    names = {m["name"] for m in ui["models"]}
    for n in ui["nodes"]:
        if n["type"] == "Hallo_ModelLoader":
            assert n["widgets_values"][0] in names
    assert all(m["url"].startswith("https://huggingface.co/") for m in ui["models"])


def test_workflows_use_only_known_node_types():
    for p in EXAMPLES:
        for n in json.loads(p.read_text())["nodes"]:
            assert n["type"] in wf.WIDGETS, f"{p.name}: {n['type']} missing from the widget table"
