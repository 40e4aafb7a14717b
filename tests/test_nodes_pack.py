"""Distribution rules of the node pack: metadata, requirements, import side effects, help pages."""

import importlib.util
import inspect
import os
import re
import socket
import sys
import tomllib
from pathlib import Path

import pytest

from tests import workflow_format as wf

REPO = Path(__file__).resolve().parents[1]
NODE_IDS = sorted(k for k in wf.WIDGETS if k.startswith("Hallo"))


def test_pyproject_declares_registry_fields():
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    project, comfy = data["project"], data["tool"]["comfy"]
    assert re.fullmatch(r"[A-Za-z][A-Za-z0-9_.-]*", project["name"]) and "comfyui" not in project["name"].lower()
    assert re.fullmatch(r"\d+\.\d+\.\d+", project["version"])
    assert project["description"] and project["license"]
    for key in ("PublisherId", "DisplayName", "Icon"):
        assert comfy[key], key
    assert comfy["requires-comfyui"] == ">=0.8.0"
    # web/ is registered through WEB_DIRECTORY; a [tool.comfy] web key would load the JS twice
    assert "web" not in comfy


def _requirements():
    lines = (REPO / "requirements.txt").read_text().splitlines()
    return [ln.split("#")[0].strip() for ln in lines if ln.split("#")[0].strip()]


def test_requirements_never_touch_torch_and_name_one_opencv():
    reqs = _requirements()
    names = {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower() for r in reqs}
    assert not names & {"torch", "torchvision", "torchaudio", "torchsde"}, "ComfyUI owns torch"
    # mediapipe depends on the contrib build: naming any other would install a second cv2
    assert {n for n in names if n.startswith("opencv")} == {"opencv-contrib-python"}
    assert not names & {"onnxruntime-gpu", "insightface", "audio-separator"}
    assert "huggingface_hub" in names or "huggingface-hub" in names  # the explicit download node


def _import_pack_like_comfyui():
    """Import the repository root the way ComfyUI's load_custom_node does (by file path)."""
    name = str(REPO).replace(".", "_x_")
    spec = importlib.util.spec_from_file_location(name, REPO / "__init__.py",
                                                  submodule_search_locations=[str(REPO)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _tree():
    return {p for p in REPO.rglob("*") if "__pycache__" not in p.parts and ".git" not in p.parts
            and ".pytest_cache" not in p.parts}


def test_importing_the_pack_downloads_and_writes_nothing(monkeypatch):
    def no_network(*a, **k):
        raise AssertionError("the pack opened a network connection at import")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    before = _tree()
    heavy = ("diffusers", "transformers", "mediapipe", "onnxruntime", "cv2")
    loaded_before = {m for m in heavy if m in sys.modules}
    module = _import_pack_like_comfyui()
    assert _tree() == before
    assert {m for m in heavy if m in sys.modules} == loaded_before, "heavy libraries imported at import time"
    assert module.WEB_DIRECTORY == "./web" and (REPO / "web").is_dir()
    assert inspect.iscoroutinefunction(module.comfy_entrypoint)
    assert sys.modules["hallo_core"].__file__ == str(REPO / "hallo_core" / "__init__.py")


@pytest.mark.parametrize("node_id", NODE_IDS)
def test_every_node_has_a_help_page(node_id):
    page = REPO / "web" / "docs" / f"{node_id}.md"
    assert page.is_file(), page
    text = page.read_text()
    assert text.startswith("# ") and len(text) > 200


def test_every_node_module_lists_its_nodes_and_ids_are_prefixed():
    ids = set()
    for f in sorted((REPO / "nodes").glob("*.py")):
        src = f.read_text()
        ids |= set(re.findall(r'node_id="([^"]+)"', src))
    assert ids == set(NODE_IDS)
    assert all(i.startswith(("Hallo_", "Hallo2_")) for i in ids)
    for f in ("loaders", "audio", "face", "reference", "sampler", "long_video", "upscale", "download"):
        assert (REPO / "nodes" / f"{f}.py").is_file(), f


def test_web_extension_registers_and_listens_to_the_pack_messages():
    js = (REPO / "web" / "hallo.js").read_text()
    assert "app.registerExtension" in js
    for event in ("hallo.progress", "hallo.clip"):
        assert event in js
    py = (REPO / "nodes" / "progress.py").read_text()
    assert 'EVENT_PROGRESS = "hallo.progress"' in py and 'EVENT_CLIP = "hallo.clip"' in py


def test_nodes_never_use_subprocess_or_ffmpeg():
    for f in (REPO / "nodes").glob("*.py"):
        src = f.read_text()
        assert "subprocess" not in src and "os.system" not in src and "ffmpeg" not in src.lower(), f.name
    assert "folder_paths.folder_names_and_paths[" not in (REPO / "nodes" / "common.py").read_text()
    assert os.path.isfile(REPO / "nodes" / "convert.py")
