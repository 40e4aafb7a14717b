"""The example workflows read on a canvas: no node hides another, every stage sits in its group, and a
note says where the models come from and which settings matter.

Geometry is the frontend's (ComfyUI 0.8.0, frontend 1.35.9): a node's ``pos`` is the top-left corner of its
body, the title bar (LiteGraph.NODE_TITLE_HEIGHT = 30) is drawn above it, and ``size`` is the body. On load
the frontend grows a node to its computed size but never shrinks it; the browser test checks that no node
had to grow, so the boxes computed here are the ones drawn.
"""

from __future__ import annotations

import itertools

import pytest

from tests import workflow_format as wf

TITLE_H = 30
GROUP_TITLE_H = 24 * 1.4  # LGraphGroup.titleHeight is font_size * 1.4; the groups use font_size 24
NAMES = sorted(wf.EXAMPLES)

# which group each node type belongs in
STAGE = {
    "LoadImage": "Inputs", "LoadAudio": "Inputs",
    "Hallo_ModelLoader": "Models", "Hallo_VAELoader": "Models", "Hallo_AudioModelLoader": "Models",
    "Hallo_FaceModelLoader": "Models",
    "Hallo_FaceAnalysis": "Face", "PreviewImage": "Face",
    "Hallo_AudioEmbeds": "Audio", "Hallo_SpeakerTracks": "Audio",
    "Hallo_Reference": "Sampling", "Hallo_Sampler": "Sampling", "Hallo2_LongVideo": "Sampling",
    "CreateVideo": "Output", "SaveVideo": "Output", "Hallo_PasteBack": "Output", "Hallo_PasteSpeakers": "Output",
    "Hallo2_UpscalerLoader": "Upscale", "UpscaleModelLoader": "Upscale", "Hallo2_TemporalUpscale": "Upscale",
}


def node_box(node: dict) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) of a node as drawn, title bar included."""
    (x, y), (w, h) = node["pos"], node["size"]
    return x, y - TITLE_H, x + w, y + h


def group_box(group: dict) -> tuple[float, float, float, float]:
    x, y, w, h = group["bounding"]
    return x, y, x + w, y + h


def overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def inside(inner, outer) -> bool:
    return outer[0] <= inner[0] and outer[1] + GROUP_TITLE_H <= inner[1] and inner[2] <= outer[2] and inner[3] <= outer[3]


def test_geometry_helpers():
    a = {"pos": [0, 30], "size": [100, 50]}
    assert node_box(a) == (0, 0, 100, 80)
    below = {"pos": [0, 110], "size": [100, 50]}  # its title bar starts where a's body ends
    assert not overlap(node_box(a), node_box(below))
    title_hit = {"pos": [50, 100], "size": [100, 50]}  # title bar (y 70..100) over a's body (y 30..80)
    assert overlap(node_box(a), node_box(title_hit))
    g = {"bounding": [-10, -40, 120, 130]}
    assert inside(node_box(a), group_box(g))
    assert not inside(node_box(a), group_box({"bounding": [-10, -20, 120, 130]}))  # under the group title


@pytest.mark.parametrize("name", NAMES)
def test_no_node_overlaps_another(name):
    nodes = wf.load(wf.example_path(name))["nodes"]
    for n in nodes:
        assert n["size"][0] > 0 and n["size"][1] > 0 and not n.get("flags", {}).get("collapsed"), n["id"]
    hits = [(a["title"], b["title"]) for a, b in itertools.combinations(nodes, 2)
            if overlap(node_box(a), node_box(b))]
    assert hits == []


@pytest.mark.parametrize("name", NAMES)
def test_stages_are_grouped(name):
    ui = wf.load(wf.example_path(name))
    assert all(g["font_size"] == 24 for g in ui["groups"])  # GROUP_TITLE_H assumes it
    groups = {g["title"]: group_box(g) for g in ui["groups"]}
    assert len(groups) == len(ui["groups"]), "two groups with one title"
    for (ta, a), (tb, b) in itertools.combinations(groups.items(), 2):
        assert not overlap(a, b), (ta, tb)
    for n in ui["nodes"]:
        containing = [t for t, g in groups.items() if inside(node_box(n), g)]
        if n["type"] in wf.FRONTEND_ONLY:
            assert containing == [], f"the note sits inside {containing}"
            continue
        assert containing == [STAGE[n["type"]]], f"{n['title']}: in {containing}, expected {STAGE[n['type']]}"
        assert not any(overlap(node_box(n), g) for t, g in groups.items() if t not in containing), n["title"]
    expected = {"Inputs", "Models", "Face", "Audio", "Sampling"}
    assert expected <= set(groups), sorted(groups)


@pytest.mark.parametrize("name", NAMES)
def test_note_names_model_sources_and_settings(name):
    ui = wf.load(wf.example_path(name))
    notes = [n for n in ui["nodes"] if n["type"] in wf.FRONTEND_ONLY]
    assert len(notes) == 1
    text = notes[0]["widgets_values"][0]
    assert "huggingface.co/fudan-generative-ai/hallo2" in text and "models/hallo/" in text
    assert "Settings that matter" in text
    loader = next(n for n in ui["nodes"] if n["type"] == "Hallo_ModelLoader")
    assert loader["widgets_values"][0] in text  # the network file this workflow loads
    for m in ui["models"]:
        assert m["name"].split("/")[-1] in text, m["name"]
    sampler = next(n for n in ui["nodes"] if n["type"] in ("Hallo_Sampler", "Hallo2_LongVideo"))
    values = wf.widget_values(sampler)
    assert f"`steps` {values['steps']}" in text and f"`cfg` {values['cfg']}" in text
