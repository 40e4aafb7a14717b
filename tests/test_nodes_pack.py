"""Distribution rules of the node pack: metadata, requirements, import side effects, help pages."""

import importlib.util
import inspect
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


# What writes into a checkout besides the pack: Python's bytecode cache, git, pytest, and .ci/run,
# which installs its job 2 and 3 venvs under .ci-work/ while job 1's tests run.
NOT_THE_PACK = {"__pycache__", ".git", ".pytest_cache", ".ci-work"}


def _tree(root: Path = REPO):
    return {p for p in root.rglob("*") if not NOT_THE_PACK & set(p.relative_to(root).parts)}


def test_the_tree_comparison_sees_a_pack_write_and_not_the_ci_venvs(tmp_path):
    (tmp_path / "nodes").mkdir()
    (tmp_path / ".ci-work" / "legacy").mkdir(parents=True)
    before = _tree(tmp_path)
    (tmp_path / ".ci-work" / "legacy" / "pyvenv.cfg").write_text("home = /usr/bin")
    (tmp_path / "nodes" / "__pycache__").mkdir()
    assert _tree(tmp_path) == before
    for made in (tmp_path / "nodes" / "cache.json", tmp_path / "models", tmp_path / "web" / "x.js"):
        made.parent.mkdir(exist_ok=True)
        made.mkdir() if made.name == "models" else made.write_text("{}")
        assert made in _tree(tmp_path) - before


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


SCHEMA_SCRIPT = """
    ext = importlib.import_module(name + ".nodes.extension")
    progress = importlib.import_module(name + ".nodes.progress")
    yaml_path = tempfile.mkdtemp()
    folder_paths.folder_names_and_paths["hallo"] = ([yaml_path], set())  # as extra_model_paths.yaml leaves it
    ext.setup()
    widget_types = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
    nodes = {}
    for cls in ext.node_list():
        schema = cls.define_schema()
        nodes[schema.node_id] = [i.id for i in schema.inputs if i.get_io_type() in widget_types]
    print(json.dumps({"nodes": nodes, "hallo_paths": folder_paths.get_folder_paths("hallo"), "yaml": yaml_path,
                      "events": [progress.EVENT_PROGRESS, progress.EVENT_CLIP, progress.EVENT_RUN]}))
"""


@pytest.fixture(scope="module")
def schemas():
    from tests.comfy_server import run_in_comfy_python

    return run_in_comfy_python(SCHEMA_SCRIPT)


def test_the_extension_lists_every_node_once_with_prefixed_ids(schemas):
    ids = list(schemas["nodes"])
    assert len(ids) == len(set(ids)) and set(ids) == set(NODE_IDS)
    assert all(i.startswith(("Hallo_", "Hallo2_")) for i in ids)


def test_workflow_widget_table_follows_the_node_schemas(schemas):
    """tests/workflow_format.WIDGETS is hand-written because the workflow twin test runs without ComfyUI
    (the schemas need comfy_api, the core nodes' widgets live in ComfyUI); this keeps it honest."""
    for node_id, widgets in schemas["nodes"].items():
        assert wf.WIDGETS[node_id] == widgets, node_id


def test_registering_models_hallo_keeps_the_yaml_paths_first(schemas):
    paths = schemas["hallo_paths"]
    assert paths[0] == schemas["yaml"] and len(paths) == 2 and paths[1].endswith("hallo")


def test_web_extension_registers_and_listens_to_the_pack_messages(schemas):
    js = (REPO / "web" / "hallo.js").read_text()
    assert "app.registerExtension" in js
    for event in schemas["events"]:
        assert f'"{event}"' in js or f"'{event}'" in js, event


def test_nodes_never_use_subprocess_or_ffmpeg():
    """Project rule: video goes through PyAV inside hallo_core, never an external program."""
    for f in (REPO / "nodes").glob("*.py"):
        src = f.read_text()
        assert "subprocess" not in src and "os.system" not in src and "ffmpeg" not in src.lower(), f.name
