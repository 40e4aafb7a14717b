"""The example workflows (UI format) and their API-format twins must describe the same graph."""

import json
from pathlib import Path

import pytest

from tests import workflow_format as wf

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "example_workflows").glob("*.json"))
NAMES = sorted(wf.EXAMPLES)


def test_every_example_has_a_twin_and_a_thumbnail():
    assert sorted(p.stem for p in EXAMPLES) == sorted(wf.EXAMPLES.values())
    for name in NAMES:
        assert wf.twin_path(name).is_file(), name
        # ComfyUI 0.8.0's template browser (frontend 1.35) asks for <name>.jpg for custom-node templates
        thumb = wf.example_path(name).with_suffix(".jpg")
        assert thumb.is_file() and thumb.read_bytes()[:3] == b"\xff\xd8\xff", f"{thumb} is not a JPEG"


def test_template_names_read_as_titles():
    """The file stem is the template's title: words and spaces, none of the characters that some file
    systems or URLs refuse."""
    for stem in wf.EXAMPLES.values():
        assert stem[0].isupper() and " " in stem and "_" not in stem, stem
        assert all(c.isalnum() or c == " " for c in stem), stem


@pytest.mark.parametrize("name", NAMES)
def test_api_twin_matches_ui_workflow(name):
    ui = wf.load(wf.example_path(name))
    api = wf.load(wf.twin_path(name))
    converted = wf.ui_to_api(ui)
    assert set(converted) == set(api), "different node ids"
    for nid, node in api.items():
        assert converted[nid]["class_type"] == node["class_type"], nid
        assert converted[nid]["inputs"] == node["inputs"], f"node {nid} ({node['class_type']}) inputs differ"


@pytest.mark.parametrize("name", NAMES)
def test_ui_workflow_is_consistent(name):
    ui = wf.load(wf.example_path(name))
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
            assert n["type"] in wf.WIDGETS or n["type"] in wf.FRONTEND_ONLY, \
                f"{p.name}: {n['type']} missing from the widget table"


# folder_paths.supported_pt_extensions of ComfyUI 0.8.0: /api/experiment/models/<folder>, which the
# frontend's missing-models check reads, lists only these, whatever extensions the folder is registered with.
COMFY_LISTED = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}


@pytest.mark.parametrize("name", NAMES)
def test_model_metadata_is_checkable(name):
    """Each ``models`` entry is a file the frontend can find in its folder listing, with the URL of the
    same file in the Hugging Face repository the engine's downloader uses."""
    from hallo_core.assets.layout import COMPONENTS

    official = {}  # relative file -> HF repo
    for _rel, repo, files, _kind in COMPONENTS.values():
        for f in files:
            official[f] = repo
    ui = wf.load(wf.example_path(name))
    assert ui["models"]
    for m in ui["models"]:
        assert Path(m["name"]).suffix in COMFY_LISTED, m
        rel = m["name"] if m["directory"] == "hallo" else "realesrgan/" + m["name"]
        assert m["directory"] in {"hallo", "upscale_models"}, m
        assert rel in official, m
        assert m["url"] == f"https://huggingface.co/{official[rel]}/resolve/main/{rel}", m
    assert len({m["url"] for m in ui["models"]}) == len(ui["models"])
