"""What installers and the registry read: requirements.txt, pyproject.toml, the installed set."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")


def _pyproject() -> dict:
    with open(REPO / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)


def _requirements(name: str = "requirements.txt") -> list:
    lines = (REPO / name).read_text().splitlines()
    return [ln.split("#", 1)[0].strip() for ln in lines if ln.split("#", 1)[0].strip()]


def _name(req: str) -> str:
    return re.split(r"[<>=!~;\[ ]", req, 1)[0].lower().replace("_", "-")


def test_requirements_never_move_torch():
    names = {_name(r) for r in _requirements()}
    assert not names & {"torch", "torchvision", "torchaudio"}, "ComfyUI owns torch"


def test_static_dependencies_equal_requirements_txt():
    project = _pyproject()["project"]
    assert "dependencies" not in project.get("dynamic", [])
    assert project["dependencies"] == _requirements()


def test_registry_metadata_keys():
    data = _pyproject()
    urls = data["project"]["urls"]
    # the keys comfy-cli's config parser reads (Homepage, Documentation, Repository, Issues)
    assert set(urls) <= {"Homepage", "Documentation", "Repository", "Issues"}
    assert {"Repository", "Issues"} <= set(urls)
    comfy = data["tool"]["comfy"]
    assert comfy["PublisherId"] and comfy["DisplayName"]
    # git-tracked folders are zipped anyway: includes would only re-add what .comfyignore drops
    assert not comfy.get("includes")
    assert data["project"]["scripts"]["hallo"] == "hallo_core.cli.main:main"


def test_comfyignore_keeps_the_pack_and_drops_the_tests():
    ignored = [ln.strip() for ln in (REPO / ".comfyignore").read_text().splitlines()
               if ln.strip() and not ln.startswith("#")]
    assert "tests/" in ignored
    for needed in ("hallo_core", "nodes", "web", "example_workflows", "__init__.py", "requirements.txt"):
        assert not any(needed.startswith(i.rstrip("/")) for i in ignored), needed


def expected_models() -> list:
    from hallo_core.assets.layout import comfy_place, files_to_fetch

    return [{"location": "/{}/{}".format(*comfy_place(path)),
             "model_url": f"https://huggingface.co/{repo}/resolve/main/{path}"}
            for repo, path in files_to_fetch(["hallo", "hallo2", "hallo2-4k"])]


def test_registry_models_list_is_the_model_layout_table():
    assert _pyproject()["tool"]["comfy"]["Models"] == expected_models()


def test_one_opencv_distribution_installed():
    """Checks the environment, not the code: meaningful only in an install made from this
    requirements.txt, which .ci/run makes and marks with HALLO_FRESH_INSTALL=1."""
    from importlib.metadata import distributions

    if not os.environ.get("HALLO_FRESH_INSTALL"):
        pytest.skip("checks a fresh install from requirements.txt (.ci/run sets HALLO_FRESH_INSTALL=1)")

    cv2_dists = sorted({d.metadata["Name"].lower() for d in distributions()
                        if (d.metadata["Name"] or "").lower().startswith("opencv")})
    assert len(cv2_dists) == 1, f"several distributions install cv2: {cv2_dists}"
    # mediapipe requires the contrib build; asking for any other one would install a second cv2
    assert cv2_dists == ["opencv-contrib-python"]
    assert "opencv-contrib-python" in {_name(r) for r in _requirements()}
