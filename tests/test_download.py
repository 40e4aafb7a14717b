"""Which official files a download fetches, from which repository, into which layout.

The file trees below are those the upstream READMEs document for the two Hugging Face repos
(fudan-generative-vision/hallo README "pretrained_models", hallo2 README likewise, plus the
hallo/ folder its download section links). The end-to-end test runs the real CLI and the real
huggingface_hub against a local server that serves those trees (tests/hf_local_hub.py).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hallo_core.assets.layout import BUNDLES, COMPONENTS, HALLO2_REPO, HALLO_REPO, files_to_fetch, resolve

REPO_ROOT = Path(__file__).resolve().parents[1]

_COMMON = [
    "audio_separator/download_checks.json", "audio_separator/mdx_model_data.json",
    "audio_separator/vr_model_data.json", "audio_separator/Kim_Vocal_2.onnx",
    "face_analysis/models/face_landmarker_v2_with_blendshapes.task", "face_analysis/models/1k3d68.onnx",
    "face_analysis/models/2d106det.onnx", "face_analysis/models/genderage.onnx",
    "face_analysis/models/glintr100.onnx", "face_analysis/models/scrfd_10g_bnkps.onnx",
    "motion_module/mm_sd_v15_v2.ckpt",
    "sd-vae-ft-mse/config.json", "sd-vae-ft-mse/diffusion_pytorch_model.safetensors",
    "stable-diffusion-v1-5/unet/config.json", "stable-diffusion-v1-5/unet/diffusion_pytorch_model.safetensors",
] + [f"wav2vec/wav2vec2-base-960h/{f}" for f in (
    "config.json", "feature_extractor_config.json", "model.safetensors", "preprocessor_config.json",
    "special_tokens_map.json", "tokenizer_config.json", "vocab.json")]
OFFICIAL_TREES = {
    HALLO_REPO: _COMMON + ["hallo/net.pth"],
    HALLO2_REPO: _COMMON + [
        "CodeFormer/codeformer.pth", "CodeFormer/vqgan_code1024.pth",
        "facelib/detection_mobilenet0.25_Final.pth", "facelib/detection_Resnet50_Final.pth",
        "facelib/parsing_parsenet.pth", "facelib/yolov5l-face.pth", "facelib/yolov5n-face.pth",
        "hallo2/net_g.pth", "hallo2/net.pth", "realesrgan/RealESRGAN_x2plus.pth",
    ],
}


def test_every_planned_file_exists_in_its_official_repo():
    for name, (rel, repo, files, _) in COMPONENTS.items():
        assert files, name
        for f in files:
            assert f in OFFICIAL_TREES[repo], f"{name}: {f} is not in {repo}"
            assert f == rel or f.startswith(rel.rstrip("/") + "/"), f"{name}: {f} outside {rel}"


def test_plan_fetches_what_the_code_loads_and_nothing_else():
    from hallo_core.face.detect import DETECTOR_FILENAME
    from hallo_core.face.embed import RECOGNIZER_FILENAME
    from hallo_core.face.landmarks import TASK_FILENAME
    from hallo_core.upscale.file_upscale import WEIGHT_FILES

    plan = dict((f, repo) for repo, f in files_to_fetch(["hallo", "hallo2", "hallo2-4k"]))
    assert plan["hallo/net.pth"] == HALLO_REPO  # only the v1 repo has it
    assert plan["hallo2/net.pth"] == HALLO2_REPO and plan["hallo2/net_g.pth"] == HALLO2_REPO
    for f in (DETECTOR_FILENAME, RECOGNIZER_FILENAME, TASK_FILENAME):
        assert f"face_analysis/models/{f}" in plan
    for f in WEIGHT_FILES.values():
        assert f in plan, f
    unused = ("1k3d68", "2d106det", "genderage", "yolov5", "mobilenet0.25", "CodeFormer/", "motion_module/",
              "unet/diffusion_pytorch_model")
    assert not [f for f in plan if any(u in f for u in unused)]
    assert len(files_to_fetch(["hallo", "hallo"])) == len(files_to_fetch("hallo"))  # no duplicates
    with pytest.raises(ValueError, match="unknown component"):
        files_to_fetch("hallo3")
    assert set(BUNDLES) == {"hallo", "hallo2", "hallo2-4k"}


def _run_download(hub_url: str, models: Path, home: Path, *which: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_ENDPOINT=hub_url, HF_HOME=str(home), HF_HUB_DISABLE_TELEMETRY="1",
               HF_HUB_OFFLINE="0", HF_HUB_DISABLE_XET="1", PYTHONPATH=str(REPO_ROOT))
    return subprocess.run([sys.executable, "-m", "hallo_core", "download", "--models", str(models),
                           "--which", *which], env=env, capture_output=True, text=True, timeout=300)


def test_download_command_against_a_local_hub(tmp_path):
    from tests.hf_local_hub import LocalHub

    content = {repo: {f: f"{repo}:{f}".encode() for f in files} for repo, files in OFFICIAL_TREES.items()}
    models = tmp_path / "models"
    with LocalHub(content) as hub:
        r = _run_download(hub.url, models, tmp_path / "hf", "hallo", "hallo2", "hallo2-4k")
        assert r.returncode == 0, r.stderr[-3000:]
        got = sorted(str(p.relative_to(models)) for p in models.rglob("*")
                     if p.is_file() and ".cache" not in p.parts)
        plan = files_to_fetch(["hallo", "hallo2", "hallo2-4k"])
        assert got == sorted(f for _, f in plan)
        for repo, f in plan:  # each file came from the repo the plan names
            assert (models / f).read_bytes() == f"{repo}:{f}".encode()
        fetched = [p for m, p in hub.requests if m == "GET" and "/resolve/" in p]
        assert len(fetched) == len(plan)

        # A second run finds everything in place and transfers nothing.
        hub.requests.clear()
        r = _run_download(hub.url, models, tmp_path / "hf", "hallo", "hallo2", "hallo2-4k")
        assert r.returncode == 0, r.stderr[-3000:]
        assert not [p for m, p in hub.requests if m == "GET" and "/resolve/" in p]

    # The downloaded folder satisfies the presence checks of every bundle.
    for bundle in BUNDLES:
        assert resolve(models).missing(bundle) == [], bundle


def test_download_reports_a_missing_repo_file(tmp_path):
    from tests.hf_local_hub import LocalHub

    content = {repo: {f: b"x" for f in files if f != "hallo2/net_g.pth"} for repo, files in OFFICIAL_TREES.items()}
    with LocalHub(content) as hub:
        r = _run_download(hub.url, tmp_path / "models", tmp_path / "hf", "hallo2-4k")
    # snapshot_download only filters the listing, so a planned file the repo lacks would pass
    # silently; the command checks the result and names what is missing.
    assert r.returncode != 0
    assert "hallo2/net_g.pth" in r.stderr and HALLO2_REPO in r.stderr
    assert (tmp_path / "models" / "facelib/parsing_parsenet.pth").is_file()


def test_offline_with_a_partly_filled_folder_names_the_absent_files(tmp_path):
    """Without the Hub, snapshot_download returns an existing folder as it is: the command still
    fails with the offline reason, on one line, naming only the files that are absent."""
    models = tmp_path / "models"
    (models / "facelib").mkdir(parents=True)
    (models / "facelib" / "detection_Resnet50_Final.pth").write_bytes(b"x")
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO_ROOT))
    r = subprocess.run([sys.executable, "-m", "hallo_core", "download", "--models", str(models), "--which", "facelib"],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith("error: download failed: Hugging Face cannot be reached (offline, or HF_HUB_OFFLINE "
                               f"is set) (https://huggingface.co/{HALLO2_REPO}: facelib/parsing_parsenet.pth) (--models): ")
    assert "detection_Resnet50_Final" not in r.stderr
