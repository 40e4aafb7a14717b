"""UI-format (what users load) to API-format (what POST /prompt takes) conversion for the example
workflows, for the twin test and the integration tests (not a test module).

ComfyUI 0.8.0 has no server-side converter (the frontend's "Export (API)" does it). The UI format keeps
widget values positionally in ``widgets_values``; this table gives the widget names per node class, in
``input_order`` of GET /object_info, plus the frontend-only values that follow some widgets (the
``control_after_generate`` choice after a seed, the upload button of LoadImage / LoadAudio). The
integration test checks the table against a live server's /object_info.
"""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Short name (of the API twin in tests/workflows/ and in test ids) -> example workflow file stem. ComfyUI
# 0.8.0's template browser (frontend 1.35.9) shows a custom-node template by its file stem, as title,
# description and tab name, so the stems are written to be read.
EXAMPLES = {
    "hallo_portrait_to_video": "Hallo portrait to talking video",
    "hallo2_long_video": "Hallo2 long talking video",
    "hallo2_long_video_upscaled": "Hallo2 long video upscaled x2",
    "hallo2_full_frame": "Hallo2 landscape photo to full frame video",
    "hallo2_two_people": "Hallo2 two people talking",
}

# Nodes that exist only in the frontend (no backend class, never sent to /prompt).
FRONTEND_ONLY = {"Note", "MarkdownNote"}


def example_path(name: str) -> Path:
    """The UI-format example workflow of short name ``name``."""
    return REPO / "example_workflows" / f"{EXAMPLES[name]}.json"


def twin_path(name: str) -> Path:
    """Its API-format twin."""
    return REPO / "tests" / "workflows" / f"{name}.api.json"

# class -> widget names in input_order (linked widget inputs included: the UI keeps their value).
WIDGETS = {
    "LoadImage": ["image"],
    "LoadAudio": ["audio"],
    "CreateVideo": ["fps"],
    "SaveVideo": ["filename_prefix", "format", "codec"],
    "UpscaleModelLoader": ["model_name"],
    "PreviewImage": [],
    "Hallo_ModelLoader": ["model", "precision"],
    "Hallo_VAELoader": ["vae_folder", "precision"],
    "Hallo_AudioModelLoader": ["separator", "precision"],
    "Hallo_FaceModelLoader": ["onnx_device"],
    "Hallo_AudioEmbeds": ["segment_60s"],
    "Hallo_FaceAnalysis": ["size", "mode", "face_expand_ratio", "no_face", "face_index", "margin"],
    "Hallo_PasteBack": ["max_side", "feather", "output_mode", "filename_prefix", "fps"],
    "Hallo_SpeakerTracks": [],
    "Hallo_PasteSpeakers": ["max_side", "feather", "output_mode", "filename_prefix", "fps"],
    "Hallo_Reference": [],
    "Hallo_MotionFrames": ["clip_index", "patch_drop", "mask_rate"],
    "Hallo_Sampler": ["seed", "steps", "cfg", "pose_weight", "face_weight", "lip_weight", "scheduler",
                      "fast", "cfg_steps", "low_vram"],
    "Hallo2_LongVideo": ["seed", "steps", "cfg", "pose_weight", "face_weight", "lip_weight", "scheduler",
                         "mask_rate", "output_mode", "filename_prefix", "resume", "fast", "cfg_steps", "low_vram"],
    "Hallo2_UpscalerLoader": ["fp16", "use_parser"],
    "Hallo2_TemporalUpscale": ["scale", "fidelity", "face_upsample", "landmark_smoothing", "output_mode",
                               "filename_prefix"],
    "Hallo_DownloadModels": ["models", "download"],
}

# Frontend-only values stored right after a widget's value: (class, widget) -> how many.
EXTRA_VALUES = {
    ("LoadImage", "image"): 1,  # "image" (upload button)
    ("LoadAudio", "audio"): 2,  # audio player + upload button (null, null)
    ("Hallo_Sampler", "seed"): 1,  # control_after_generate
    ("Hallo2_LongVideo", "seed"): 1,
}


def widget_values(node: dict) -> dict:
    """{widget name: value} of one UI node (frontend-only values skipped)."""
    names = WIDGETS[node["type"]]
    values = list(node.get("widgets_values") or [])
    out, i = {}, 0
    for name in names:
        if i >= len(values):
            raise ValueError(f"node {node['id']} ({node['type']}): no value for widget {name!r}")
        out[name] = values[i]
        i += 1 + EXTRA_VALUES.get((node["type"], name), 0)
    if i != len(values):
        raise ValueError(f"node {node['id']} ({node['type']}): {len(values)} widget values, expected {i}")
    return out


def ui_to_api(ui: dict) -> dict:
    """Convert a UI-format workflow (version 0.4, no subgraphs) to the API prompt format."""
    links = {link[0]: link for link in ui["links"]}  # [id, from_node, from_slot, to_node, to_slot, type]
    api = {}
    for node in ui["nodes"]:
        if node.get("mode", 0) != 0 or node["type"] in FRONTEND_ONLY:
            continue
        inputs = dict(widget_values(node))
        for inp in node.get("inputs", []):
            if inp.get("link") is None:
                continue
            _, src, slot, dst, _dst_slot, _t = links[inp["link"]]
            assert dst == node["id"], f"link {inp['link']} does not end at node {node['id']}"
            inputs[inp["name"]] = [str(src), int(slot)]
        api[str(node["id"])] = {"class_type": node["type"], "inputs": inputs,
                                "_meta": {"title": node.get("title") or node["type"]}}
    return api


def load(path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))
