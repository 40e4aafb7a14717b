"""Hallo_DownloadModels inside ComfyUI's Python, against a local stand-in for the Hub.

Skipped without COMFYUI_PATH (the node imports comfy_api). The node runs with the real
huggingface_hub, whose HF_ENDPOINT points at tests/hf_local_hub.py serving the official trees.
"""

from tests.comfy_server import run_in_comfy_python
from tests.test_download import OFFICIAL_TREES

SCRIPT = """
    importlib.import_module(name + ".nodes.extension").setup()
    D = importlib.import_module(name + ".nodes.download").HalloDownloadModels
    folder_paths.folder_names_and_paths["hallo"] = ([os.environ["TARGET"]], set())
    res = {}
    for key, choice, download in [("report", "hallo (portrait video)", False),
                                  ("fetch", "hallo (portrait video)", True),
                                  ("again", "hallo (portrait video)", True),
                                  ("upscaler", "hallo2 + temporal upscaler", False)]:
        res[key] = D.execute(models=choice, download=download).result[0]
        res[key + "_files"] = sorted(os.path.relpath(os.path.join(d, f), os.environ["TARGET"])
                                     for d, _, fs in os.walk(os.environ["TARGET"]) for f in fs
                                     if ".cache" not in d)
    print(json.dumps(res))
"""


def test_download_node_reports_then_fetches_from_the_right_repos(tmp_path):
    from hallo_core.assets.layout import HALLO_REPO, files_to_fetch
    from tests.hf_local_hub import LocalHub

    content = {repo: {f: f"{repo}:{f}".encode() for f in files} for repo, files in OFFICIAL_TREES.items()}
    target = tmp_path / "hallo"
    target.mkdir()
    with LocalHub(content) as hub:
        res = run_in_comfy_python(SCRIPT, timeout=600, TARGET=str(target), HF_ENDPOINT=hub.url,
                                  HF_HOME=str(tmp_path / "hf"), HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_OFFLINE="0",
                                  HF_HUB_DISABLE_XET="1")
        gets = [p for m, p in hub.requests if m == "GET" and "/resolve/" in p]

    plan = files_to_fetch("hallo")
    assert f"0 of {len(plan)} present" in res["report"]
    assert f"missing: hallo/net.pth (https://huggingface.co/{HALLO_REPO})" in res["report"]
    assert res["report_files"] == []  # reporting downloads nothing
    assert res["fetch_files"] == sorted(f for _, f in plan)
    for repo, f in plan:
        assert f"downloaded {f}" in res["fetch"]
        assert (target / f).read_bytes() == f"{repo}:{f}".encode()
    assert f"{len(plan)} of {len(plan)} present" in res["again"] and "downloaded" not in res["again"]
    assert len(gets) == len(plan)  # the third run transferred nothing
    assert "missing: hallo2/net_g.pth" in res["upscaler"] and "missing: hallo2/net.pth" in res["upscaler"]
    assert "missing: wav2vec" not in res["upscaler"]  # shared files already fetched count as present
