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
    from hallo_core.assets.layout import files_to_fetch

    return [{"location": f"/hallo/{path}", "model_url": f"https://huggingface.co/{repo}/resolve/main/{path}"}
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


def test_ray_is_only_an_extra(tmp_path):
    """``pip install .`` does not install Ray: the built metadata requires it only with the ``ray``
    extra, requirements.txt does not list it, and the engine imports it in one module only."""
    import shutil
    import subprocess

    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, tmp_path / name)
    (tmp_path / "hallo_core").mkdir()
    (tmp_path / "hallo_core" / "__init__.py").write_text("")
    (tmp_path / "meta").mkdir()
    extras = _pyproject()["project"]["optional-dependencies"]
    assert list(extras) == ["ray"] and [_name(r) for r in extras["ray"]] == ["ray"]
    assert "ray" not in {_name(r) for r in _requirements()}
    code = ("from setuptools import build_meta as b; import os, sys; "
            "n = b.prepare_metadata_for_build_wheel('meta'); "
            "sys.stdout.write(open(os.path.join('meta', n, 'METADATA')).read())")
    r = subprocess.run([sys.executable, "-W", "ignore", "-c", code], cwd=tmp_path, capture_output=True, text=True,
                       timeout=120)
    if "invalid command 'bdist_wheel'" in r.stderr:  # setuptools < 70.1 without the wheel package
        pytest.skip("this setuptools cannot build wheel metadata without the wheel package")
    assert r.returncode == 0, r.stderr[-2000:]
    meta = r.stdout.split("\n\n", 1)[0].splitlines()  # the headers; the description follows
    requires = [ln.split(":", 1)[1].strip() for ln in meta if ln.startswith("Requires-Dist:")]
    with_ray = [req for req in requires if _name(req) == "ray"]
    assert with_ray and all(req.replace(" ", "").endswith(";extra==\"ray\"") for req in with_ray), with_ray
    assert "Provides-Extra: ray" in meta
    importers = sorted(str(p.relative_to(REPO)) for p in (REPO / "hallo_core").rglob("*.py")
                       if re.search(r"^\s*(import ray\b|from ray\b)", p.read_text(), re.M))
    assert importers == ["hallo_core/batch_ray.py"], importers
