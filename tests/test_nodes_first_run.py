"""First run with an empty models folder, for every example workflow (API twins in tests/workflows):

- the loaders' dropdowns offer the official names, so the workflows' saved values validate;
- whichever Hallo loader runs first raises one error listing every file the workflow's Hallo loaders
  need, each with its download link, the Download Models choice and the doctor command;
- with the tiny models in place, only what that folder lacks (the upscaler's files) is reported.

The browser test queues the portrait workflow from the frontend and reads the same message there.
Runs in COMFYUI_PYTHON; skipped without COMFYUI_PATH.
"""

import pytest

from tests.comfy_server import run_in_comfy_python

SCRIPT = r"""
    C = importlib.import_module(name + ".nodes.common")
    L = importlib.import_module(name + ".nodes.loaders")
    tiny = load_support("models_folder")
    empty, full = tempfile.mkdtemp(), tempfile.mkdtemp()
    tiny.write_tiny_hallo(full); tiny.write_tiny_vae(full); tiny.write_tiny_wav2vec(full); tiny.write_tiny_face_models(full)
    res = {"combos": {}, "errors": {}, "full": {}}
    folder_paths.folder_names_and_paths["hallo"] = ([empty], set())
    for cls in (L.HalloModelLoader, L.HalloVAELoader, L.HalloAudioModelLoader):
        schema = cls.define_schema()
        res["combos"][schema.node_id] = {i.id: list(i.options) for i in schema.inputs if hasattr(i, "options")}
    for wf in ("hallo_portrait_to_video", "hallo2_long_video", "hallo2_long_video_upscaled", "hallo2_full_frame"):
        prompt = json.load(open(os.path.join(repo, "tests", "workflows", wf + ".api.json")))
        folder_paths.folder_names_and_paths["hallo"] = ([empty], set())
        try:
            C.check_prompt_models(prompt)
            res["errors"][wf] = None
        except FileNotFoundError as e:
            res["errors"][wf] = str(e)
        folder_paths.folder_names_and_paths["hallo"] = ([full], set())
        res["full"][wf] = C.missing_for_prompt(prompt)
    res["empty_root"] = empty
    print(json.dumps(res))
"""

HALLO = "https://huggingface.co/fudan-generative-ai/hallo/resolve/main/"
HALLO2 = "https://huggingface.co/fudan-generative-ai/hallo2/resolve/main/"
COMMON = ["sd-vae-ft-mse/config.json", "sd-vae-ft-mse/diffusion_pytorch_model.safetensors",
          "wav2vec/wav2vec2-base-960h/config.json", "wav2vec/wav2vec2-base-960h/preprocessor_config.json",
          "wav2vec/wav2vec2-base-960h/model.safetensors", "face_analysis/models/scrfd_10g_bnkps.onnx",
          "face_analysis/models/glintr100.onnx"]


@pytest.fixture(scope="module")
def result():
    return run_in_comfy_python(SCRIPT, timeout=900)


def test_dropdowns_offer_the_official_names_on_an_empty_folder(result):
    c = result["combos"]
    assert {"hallo/net.pth", "hallo2/net.pth"} <= set(c["Hallo_ModelLoader"]["model"])
    assert "sd-vae-ft-mse" in c["Hallo_VAELoader"]["vae_folder"]
    assert {"none", "audio_separator/Kim_Vocal_2.onnx"} <= set(c["Hallo_AudioModelLoader"]["separator"])


@pytest.mark.parametrize("wf, net, extra, choice", [
    ("hallo_portrait_to_video", "hallo/net.pth", [], "hallo (portrait video)"),
    ("hallo2_long_video", "hallo2/net.pth", [], "hallo2 (long video)"),
    ("hallo2_full_frame", "hallo2/net.pth", [], "hallo2 (long video)"),
    ("hallo2_long_video_upscaled", "hallo2/net.pth",
     ["hallo2/net_g.pth", "facelib/detection_Resnet50_Final.pth", "facelib/parsing_parsenet.pth"],
     "hallo2 + temporal upscaler"),
])
def test_one_error_lists_every_missing_file(result, wf, net, extra, choice):
    msg = result["errors"][wf]
    expected = [net] + COMMON + extra
    assert msg.startswith(f"Hallo: {len(expected)} model files are missing from {result['empty_root']}"), msg
    for rel in expected:
        url = (HALLO2 if rel.startswith(("hallo2/", "facelib/")) else HALLO) + rel
        assert f"\n  {rel}  <-  {url}" in msg, (rel, msg)
    assert msg.count("  <-  ") == len(expected)
    assert f"'Hallo Download Models' node (models: {choice}, download: on)" in msg
    assert "-m hallo_core doctor --models" in msg
    # the tiny folder has every model but the upscaler's (650 MB at official size): only those are left
    assert result["full"][wf] == extra
