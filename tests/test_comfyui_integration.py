"""The pack inside a real ComfyUI server (CPU), with tiny random-weight models in the official layout.

Runs only when COMFYUI_PATH points at a ComfyUI (>= 0.8.0) checkout whose requirements and this pack's
requirements are installed in the Python given by COMFYUI_PYTHON (default: the Python running pytest).
The server is started with ``main.py --cpu`` on a free loopback port; models, inputs and outputs live in a
temporary folder (extra_model_paths.yaml maps ``hallo`` and ``custom_nodes`` there).

The API-format twins of the example workflows are posted with CPU-sized overrides (128 px, 2 steps,
1.1 s of speech); everything else is the workflow as shipped.
"""

from __future__ import annotations

import json
import math
import os
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

COMFYUI_PATH = os.environ.get("COMFYUI_PATH")
if not COMFYUI_PATH:
    pytest.skip("COMFYUI_PATH is not set: the ComfyUI integration tests need a ComfyUI >= 0.8.0 checkout "
                "with its requirements installed (see docs/comfyui.md, 'Testing inside ComfyUI')", allow_module_level=True)
if not (Path(COMFYUI_PATH) / "main.py").is_file():
    pytest.skip(f"COMFYUI_PATH={COMFYUI_PATH} has no main.py", allow_module_level=True)

from tests import workflow_format as wf  # noqa: E402
from tests.comfy_server import PACK_NAME, SHORT_SECONDS, Server, launch, shared_fixtures  # noqa: E402
from tests.comfy_server import execution_errors as _errors  # noqa: E402

CPU_OVERRIDES = {  # node class -> input overrides that keep a CPU run short
    "LoadAudio": {"audio": "hallo_speech_short.wav"},
    "Hallo_FaceAnalysis": {"size": 128},
    "Hallo_Sampler": {"steps": 2},
    "Hallo2_LongVideo": {"steps": 2},
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    fixtures_dir = shared_fixtures()
    with launch(tmp_path_factory.mktemp("comfy"), fixtures_dir, with_models=True) as srv:
        yield srv


def _prompt(name: str, seed: int | None = None, steps: int | None = None) -> dict:
    api = wf.load(wf.twin_path(name))
    for node in api.values():
        node["inputs"].update(CPU_OVERRIDES.get(node["class_type"], {}))
        if seed is not None and "seed" in node["inputs"]:
            node["inputs"]["seed"] = seed
        if steps is not None and "steps" in node["inputs"]:
            node["inputs"]["steps"] = steps
    return api


def _expected_frames() -> int:
    return math.ceil(round(SHORT_SECONDS * 44100) / 44100 * 16000 / 640)


def _video_info(path: Path):
    import av

    with av.open(str(path)) as c:
        frames = sum(1 for _ in c.decode(video=0))
    with av.open(str(path)) as c:
        audio = [s for s in c.streams if s.type == "audio"]
        a_dur = 0.0
        if audio:
            samples = sum(fr.samples for fr in c.decode(audio=0))
            a_dur = samples / audio[0].codec_context.sample_rate
    return frames, bool(audio), a_dur


def _saved_videos(srv: Server, entry: dict) -> list[Path]:
    out = []
    for ui in entry["outputs"].values():
        for item in ui.get("images", []) + ui.get("videos", []):
            if item.get("type") == "output" and item["filename"].endswith(".mp4"):
                out.append(srv.root / "output" / item.get("subfolder", "") / item["filename"])
    return out


def test_pack_imports_without_failure(server):
    log = server.log.read_text()
    assert "IMPORT FAILED" not in log and "Cannot import" not in log, log[-4000:]
    assert PACK_NAME in log  # listed in the import-times summary
    # the pack routes Hallo's attention through ComfyUI's selection when it loads (CPU: sub-quadratic)
    assert "Hallo: attention through ComfyUI's selection (attention_sub_quad)" in log, log[-4000:]
    # and says nothing else while it loads: no warning of its own (logged, or a Python warning raised
    # from its files), on every ComfyUI version of the matrix
    loading = log.split("Starting server")[0].splitlines()
    assert [ln for ln in loading if ln.startswith("Hallo")] == [
        "Hallo: attention through ComfyUI's selection (attention_sub_quad)"], loading
    assert [ln for ln in loading if "arning" in ln and (PACK_NAME in ln or "hallo" in ln.lower())] == [], loading


def test_every_node_listed_with_tooltips(server):
    info = server.get("/object_info")
    ids = [k for k in wf.WIDGETS if k.startswith("Hallo")]
    for node_id in ids:
        assert node_id in info, f"{node_id} missing from /object_info"
        node = info[node_id]
        assert node["category"].startswith("Hallo/"), node_id
        assert node["description"], f"{node_id}: no description"
        for group in ("required", "optional"):
            for name, spec in node["input"].get(group, {}).items():
                assert len(spec) > 1 and spec[1].get("tooltip"), f"{node_id}.{name}: no tooltip"
        assert len(node["output_tooltips"]) == len(node["output"]) and all(node["output_tooltips"]), node_id
    widget_types = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
    for cls, names in wf.WIDGETS.items():  # the UI->API table must follow the live schemas
        node = info[cls]
        order = node["input_order"].get("required", []) + node["input_order"].get("optional", [])
        specs = {**node["input"].get("required", {}), **node["input"].get("optional", {})}
        live = [n for n in order if isinstance(specs[n][0], list) or specs[n][0] in widget_types]
        assert live == names, f"{cls}: widget order {live} != table {names}"


def test_example_workflows_served_as_templates(server):
    templates = server.get("/workflow_templates")
    assert sorted(templates[PACK_NAME]) == sorted(wf.EXAMPLES.values())
    for stem in wf.EXAMPLES.values():  # the frontend asks for <stem>.json and <stem>.jpg, URL-quoted
        base = server.url(f"/api/workflow_templates/{PACK_NAME}/{urllib.parse.quote(stem)}")
        with urllib.request.urlopen(base + ".json") as r:
            assert json.load(r)["nodes"]
        with urllib.request.urlopen(base + ".jpg") as r:
            assert r.read(3) == b"\xff\xd8\xff"


def test_help_pages_served_as_text(server):
    """The frontend's node help reads /extensions/<pack>/docs/<node>.md; served as text, a browser shows it."""
    info = server.get("/object_info")
    ids = [k for k in info if k.startswith(("Hallo_", "Hallo2_"))]
    assert ids
    for node_id in ids:
        with urllib.request.urlopen(server.url(f"/extensions/{PACK_NAME}/docs/{node_id}.md")) as r:
            assert r.headers.get_content_type() in ("text/markdown", "text/plain"), (node_id, r.headers["Content-Type"])
            assert r.read().decode("utf-8").startswith("# "), node_id


@pytest.mark.parametrize("name", ["hallo_portrait_to_video", "hallo2_long_video"])
def test_example_workflow_saves_video_with_audio(server, name):
    entry = server.wait(server.queue(_prompt(name)))
    assert entry["status"]["status_str"] == "success", _errors(entry)
    videos = _saved_videos(server, entry)
    assert len(videos) == 1, entry["outputs"]
    frames, has_audio, a_dur = _video_info(videos[0])
    assert frames == _expected_frames()
    assert has_audio and abs(a_dur - frames / 25.0) < 0.1, (a_dur, frames)


def test_upscaled_workflow_saves_upscaled_video_with_audio(server):
    """Workflow (c): long video to file, then the temporal upscaler reads that VIDEO and writes an mp4.
    The upscaler files are official-size random networks whose detector finds no face, so this checks the
    loaders, the wiring, streaming and audio, not the face restoration (covered by the hallo_core tests)."""
    entry = server.wait(server.queue(_prompt("hallo2_long_video_upscaled")))
    assert entry["status"]["status_str"] == "success", _errors(entry)
    videos = sorted(_saved_videos(server, entry))
    up = [v for v in videos if v.name.startswith("upscaled_")]
    assert len(up) == 1, videos
    frames, has_audio, a_dur = _video_info(up[0])
    assert frames == _expected_frames() and has_audio and abs(a_dur - frames / 25.0) < 0.1

    import av

    with av.open(str(up[0])) as c:
        s = c.streams.video[0].codec_context
        assert (s.width, s.height) == (1024, 1024)  # 128 px frames enlarged to 512 (as upstream), x2


def test_interrupt_keeps_server_healthy(server):
    prompt = _prompt("hallo_portrait_to_video", seed=1234, steps=30)
    pid = server.queue(prompt)
    t0 = time.time()
    while not server.running() and time.time() - t0 < 120:
        time.sleep(0.5)
    time.sleep(8.0)  # into the sampler: the loaders are cached from the earlier run
    server.post("/interrupt", {})
    entry = server.wait(pid, timeout=600)
    kinds = [m[0] for m in entry["status"]["messages"]]
    assert "execution_interrupted" in kinds, kinds
    assert server.get("/system_stats")["system"]["comfyui_version"]
    again = server.wait(server.queue(_prompt("hallo_portrait_to_video", seed=99)))
    assert again["status"]["status_str"] == "success", _errors(again)
    frames, has_audio, _ = _video_info(_saved_videos(server, again)[0])
    assert frames == _expected_frames() and has_audio


def _decoded(path: Path):
    import av
    import numpy as np

    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def test_cancelled_file_run_continues_when_queued_again(server):
    """File mode, resume as shipped (on): Cancel once the first clip is written, queue the very same prompt
    again, and it continues the file (it renders only the clips that were missing) into the video an
    uninterrupted run writes; the checkpoint is gone at the end. The cancel names the partial file."""
    import numpy as np
    import soundfile as sf

    from tests.comfy_server import shared_fixtures

    data, sr = sf.read(str(shared_fixtures() / "speech_1.wav"))
    sf.write(str(server.root / "input" / "hallo_speech_4clips.wav"), data[: int(2.5 * sr)], sr)  # 63 frames

    def prompt(prefix):
        api = _prompt("hallo2_long_video", steps=6)
        for node in api.values():
            if node["class_type"] == "LoadAudio":
                node["inputs"]["audio"] = "hallo_speech_4clips.wav"
            if node["class_type"] == "Hallo2_LongVideo":
                assert node["inputs"]["resume"] is True and node["inputs"]["output_mode"] == "file"
                node["inputs"]["filename_prefix"] = prefix
        return api

    ref = server.wait(server.queue(prompt("hallo2/resume_ref")))
    assert ref["status"]["status_str"] == "success", _errors(ref)
    (ref_file,) = [v for v in _saved_videos(server, ref) if v.name.startswith("resume_ref_")]

    ws = server.listen()
    try:
        pid = server.queue(prompt("hallo2/resume"), client_id=ws.client_id)
        ws.wait_for("hallo.clip", lambda d: d.get("clip") == 1)
        server.post("/interrupt", {})
        entry = server.wait(pid, timeout=600)
        assert "execution_interrupted" in [m[0] for m in entry["status"]["messages"]]
        partial = ws.wait_for("hallo.run", lambda d: d.get("state") == "partial", timeout=60)
        assert partial["reason"] == "cancelled" and partial["clips"] == 4, partial
        kept = partial["frames"]
        assert kept in (16, 32, 48) and partial["clip"] == kept // 16, partial
        assert abs(partial["seconds"] - kept / 25) < 1e-6 and f"holds {kept} of 63 frames" in partial["text"]
        out = server.root / "output" / partial["subfolder"] / partial["filename"]
        assert out.name == ref_file.name.replace("resume_ref_", "resume_")  # same job, same hash
        assert out.is_file() and out.with_name(out.name + ".resume.pt").is_file()
        assert _decoded(out).shape[0] == kept  # the partial file plays up to the last finished clip

        mark = len(ws.items)
        again = server.wait(server.queue(prompt("hallo2/resume"), client_id=ws.client_id))
        assert again["status"]["status_str"] == "success", _errors(again)
        resumed = ws.wait_for("hallo.run", lambda d: d.get("state") == "resumed", since=mark, timeout=60)
        assert resumed["clip"] == kept // 16 and resumed["frames"] == kept, resumed
        clips_run = sorted({d["clip"] for d in ws.of("hallo.clip", since=mark) if d.get("clips") == 4})
        assert clips_run == list(range(kept // 16 + 1, 5)), clips_run  # not from scratch
    finally:
        ws.close()
    assert [v for v in _saved_videos(server, again) if v.name == out.name]
    a, b = _decoded(ref_file), _decoded(out)
    assert a.shape[0] == b.shape[0] == 63 and np.array_equal(a, b)
    assert not list((server.root / "output").rglob("*.resume.pt"))
