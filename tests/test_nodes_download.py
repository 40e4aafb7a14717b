"""Hallo_DownloadModels inside ComfyUI's Python, against a local stand-in for the Hub.

Skipped without COMFYUI_PATH (the node imports comfy_api). The node runs with the real
huggingface_hub, whose HF_ENDPOINT points at tests/hf_local_hub.py serving the official trees.
Where each file goes inside ComfyUI (hallo_core.assets.layout.comfy_place) is also checked
against the example workflows without ComfyUI.
"""

from hallo_core.assets.layout import UPSCALER_FILES
from tests import workflow_format as wf
from tests.comfy_server import run_in_comfy_python
from tests.test_download import OFFICIAL_TREES

SCRIPT = """
    importlib.import_module(name + ".nodes.extension").setup()
    D = importlib.import_module(name + ".nodes.download").HalloDownloadModels
    folder_paths.folder_names_and_paths["hallo"] = ([os.environ["TARGET"]], set())
    # core's own entry, pointed at a temp folder: "Load Upscale Model" lists this folder
    folder_paths.folder_names_and_paths["upscale_models"] = (
        [os.environ["UPSCALE"]], folder_paths.folder_names_and_paths["upscale_models"][1])
    res = {}
    for key, choice, download in [("report", "hallo (portrait video)", False),
                                  ("fetch", "hallo (portrait video)", True),
                                  ("again", "hallo (portrait video)", True),
                                  ("upscaler", "hallo2 + temporal upscaler", False),
                                  ("upscaler_fetch", "hallo2 + temporal upscaler", True)]:
        res[key] = D.execute(models=choice, download=download).result[0]
        res[key + "_files"] = sorted(os.path.relpath(os.path.join(d, f), os.environ["TARGET"])
                                     for d, _, fs in os.walk(os.environ["TARGET"]) for f in fs
                                     if ".cache" not in d)
    res["upscale_models_tree"] = sorted(os.path.relpath(os.path.join(d, f), os.environ["UPSCALE"])
                                        for d, _, fs in os.walk(os.environ["UPSCALE"]) for f in fs)
    res["upscale_models_listed"] = folder_paths.get_filename_list("upscale_models")
    loader = importlib.import_module("comfy_extras.nodes_upscale_model").UpscaleModelLoader
    schema = loader.define_schema() if hasattr(loader, "define_schema") else None
    res["loader_options"] = (next(i.options for i in schema.inputs if i.id == "model_name") if schema
                             else loader.INPUT_TYPES()["required"]["model_name"][0])
    print(json.dumps(res))
"""


def test_download_node_reports_then_fetches_from_the_right_repos(tmp_path):
    from hallo_core.assets.layout import HALLO2_REPO, HALLO_REPO, files_to_fetch
    from tests.hf_local_hub import LocalHub

    content = {repo: {f: f"{repo}:{f}".encode() for f in files} for repo, files in OFFICIAL_TREES.items()}
    target = tmp_path / "hallo"
    target.mkdir()
    upscale = tmp_path / "upscale_models"
    upscale.mkdir()
    with LocalHub(content) as hub:
        res = run_in_comfy_python(SCRIPT, timeout=600, TARGET=str(target), UPSCALE=str(upscale), HF_ENDPOINT=hub.url,
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
    extra = [x for x in files_to_fetch(["hallo2", "hallo2-4k"]) if x not in plan]
    assert len(gets) == len(plan) + len(extra)  # the third run transferred nothing, the fifth the rest
    assert "missing: hallo2/net_g.pth" in res["upscaler"] and "missing: hallo2/net.pth" in res["upscaler"]
    assert "missing: wav2vec" not in res["upscaler"]  # shared files already fetched count as present
    assert "missing: RealESRGAN_x2plus.pth in models/upscale_models" in res["upscaler"]

    # RealESRGAN lands where core's Load Upscale Model lists it, and nowhere under models/hallo
    bg = UPSCALER_FILES["bg"]
    assert res["upscale_models_tree"] == ["RealESRGAN_x2plus.pth"]
    assert (upscale / "RealESRGAN_x2plus.pth").read_bytes() == f"{HALLO2_REPO}:{bg}".encode()
    assert "RealESRGAN_x2plus.pth" in res["upscale_models_listed"] and "RealESRGAN_x2plus.pth" in res["loader_options"]
    assert not [f for f in res["upscaler_fetch_files"] if "realesrgan" in f.lower()]
    assert f"downloaded {bg} to {upscale / 'RealESRGAN_x2plus.pth'}" in res["upscaler_fetch"]
    assert "hallo2/net_g.pth" in res["upscaler_fetch_files"]


def test_realesrgan_goes_where_the_upscale_workflow_loads_it():
    """The Download node places each file by layout.comfy_place: every model an example workflow
    names is a file the node fetches to that folder under that name, and the Load Upscale Model
    widget of the upscale workflow names RealESRGAN's place in models/upscale_models."""
    from hallo_core.assets.layout import comfy_place, files_to_fetch

    placed = {comfy_place(f): (repo, f) for repo, f in files_to_fetch(["hallo", "hallo2", "hallo2-4k"])}
    assert comfy_place(UPSCALER_FILES["bg"]) == ("upscale_models", "RealESRGAN_x2plus.pth")
    assert {folder for folder, _ in placed} == {"hallo", "upscale_models"}
    loaders = 0
    for name in wf.EXAMPLES:
        ui = wf.load(wf.example_path(name))
        for m in ui["models"]:
            repo, f = placed[(m["directory"], m["name"])]
            assert m["url"] == f"https://huggingface.co/{repo}/resolve/main/{f}", m
        for node in ui["nodes"]:
            if node["type"] == "UpscaleModelLoader":
                loaders += 1
                assert ("upscale_models", wf.widget_values(node)["model_name"]) in placed
    assert loaders >= 1  # the upscale workflow loads it with core's loader
