"""comfy-cli's own pyproject parser (what `comfy node publish` sends to the registry) reads our
dependencies, URLs and models. Runs where comfy-cli is installed (.ci/run's third job)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_comfy_cli_reads_dependencies_urls_and_models(monkeypatch):
    parser = pytest.importorskip("comfy_cli.registry.config_parser")
    monkeypatch.chdir(REPO)
    cfg = parser.extract_node_configuration(str(REPO / "pyproject.toml"))
    reqs = [ln.strip() for ln in (REPO / "requirements.txt").read_text().splitlines()
            if ln.strip() and not ln.startswith("#")]
    assert list(cfg.project.dependencies) == reqs
    urls = cfg.project.urls
    assert urls.repository.startswith("https://") and urls.issues.startswith("https://")
    assert urls.documentation.startswith("https://")
    models = [(m.location, m.model_url) for m in cfg.tool_comfy.models]
    from hallo_core.assets.layout import comfy_place, files_to_fetch

    # each file where ComfyUI reads it: models/hallo, RealESRGAN in models/upscale_models
    assert models == [("/{}/{}".format(*comfy_place(p)), f"https://huggingface.co/{r}/resolve/main/{p}")
                      for r, p in files_to_fetch(["hallo", "hallo2", "hallo2-4k"])]
    assert ("/upscale_models/RealESRGAN_x2plus.pth") in [m[0] for m in models]
    assert cfg.tool_comfy.publisher_id and cfg.tool_comfy.display_name
