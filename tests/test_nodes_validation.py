"""Node-level validation inside ComfyUI's Python: bad inputs and missing model files give clear errors
before any model runs. Skipped without COMFYUI_PATH (the nodes import comfy_api); runs in COMFYUI_PYTHON."""

import pytest

from tests.comfy_server import run_in_comfy_python

SCRIPT = """
    ext = importlib.import_module(name + ".nodes.extension")
    ext.setup()  # registers models/hallo
    mods = {m: importlib.import_module(f"{name}.nodes.{m}") for m in ("loaders", "audio", "face", "long_video", "sampler")}
    tiny = load_support("models_folder")
    err = load_support("outcome").err

    empty = tempfile.mkdtemp()
    folder_paths.folder_names_and_paths["hallo"] = ([empty], set())
    res = {"registered": folder_paths.get_folder_paths("hallo")}


    L = mods["loaders"]
    res["vae_missing"] = err(lambda: L.HalloVAELoader.execute(vae_folder="sd-vae-ft-mse", precision="fp32"))
    res["audio_missing"] = err(lambda: L.HalloAudioModelLoader.execute(separator="none", precision="fp32"))
    res["face_missing"] = err(lambda: L.HalloFaceModelLoader.execute(onnx_device="cpu"))
    res["net_missing"] = err(lambda: L.HalloModelLoader.execute(model="hallo2/net.pth", precision="auto"))

    A = mods["audio"].HalloAudioEmbeds
    import logging
    warned = []
    handler = logging.Handler(); handler.emit = lambda r: warned.append(r.getMessage())
    logging.getLogger("hallo").addHandler(handler)
    silent = {"waveform": torch.zeros(1, 2, 44100), "sample_rate": 44100}
    wav, sr = mods["audio"].checked_audio(silent)  # a warning, not an error: the video is made, as on the CLI
    res["silence"] = [list(wav.shape), sr, warned]
    tiny_audio = {"waveform": torch.randn(1, 1, 100), "sample_rate": 44100}
    res["too_short"] = err(lambda: A.execute(audio_models=None, audio=tiny_audio, segment_60s=True))
    res["bad_audio"] = err(lambda: A.execute(audio_models=None, audio={"waveform": torch.zeros(5)}, segment_60s=True))
    nan = torch.randn(1, 1, 44100); nan[0, 0, 22050] = float("nan")
    res["nan_audio"] = err(lambda: A.execute(audio_models=None, audio={"waveform": nan, "sample_rate": 44100},
                                             segment_60s=True))
    res["empty_audio"] = err(lambda: A.execute(audio_models=None, audio={"waveform": torch.zeros(1, 2, 0),
                                                                         "sample_rate": 44100}, segment_60s=True))

    F = mods["face"].HalloFaceAnalysis
    res["size_check"] = F.validate_inputs(size=100, face_expand_ratio=1.2)
    res["ratio_check"] = F.validate_inputs(size=512, face_expand_ratio=5.0)
    res["ok_check"] = F.validate_inputs(size=512, face_expand_ratio=1.2)
    # tiny face models with real landmarks (a .task bundle where the server's mediapipe has no legacy
    # FaceMesh), made by the test beforehand like the server tests' folders
    folder_paths.folder_names_and_paths["hallo"] = ([os.environ["HALLO_FACE_ROOT"]], set())
    fm = L.HalloFaceModelLoader.execute(onnx_device="cpu").result[0]
    ramp = torch.linspace(0, 1, 256)
    gradient = torch.stack([ramp.expand(256, 256)] * 3, dim=-1)[None]
    res["no_face"] = err(lambda: F.execute(face_models=fm, image=gradient, size=128, mode="stretch",
                                           face_expand_ratio=1.2, no_face="error"))
    res["bad_image"] = err(lambda: F.execute(face_models=fm, image=torch.rand(3, 64, 64), size=128, mode="stretch",
                                             face_expand_ratio=1.2, no_face="error"))
    LV = mods["long_video"].HalloLongVideo
    res["prefix_check"] = LV.validate_inputs(steps=40, cfg=3.5, mask_rate=0.25, filename_prefix="../../etc/x")
    res["mask_check"] = LV.validate_inputs(steps=40, cfg=3.5, mask_rate=1.5, filename_prefix="a")
    res["steps_check"] = mods["sampler"].HalloSampler.validate_inputs(steps=0, cfg=3.5)
    print(json.dumps(res))
"""


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    from tests.comfy_server import prepare_landmarks
    from tests.support.models_folder import write_tiny_face_models

    models = tmp_path_factory.mktemp("face") / "models"
    write_tiny_face_models(models / "hallo")
    reason = prepare_landmarks(models)
    res = run_in_comfy_python(SCRIPT, HALLO_FACE_ROOT=str(models / "hallo"))
    res["landmarks_missing"] = reason
    return res


@pytest.mark.parametrize("key, rel", [("vae_missing", "sd-vae-ft-mse"), ("audio_missing", "wav2vec/wav2vec2-base-960h"),
                                      ("face_missing", "face_analysis/models/scrfd_10g_bnkps.onnx"),
                                      ("net_missing", "hallo2/net.pth")])
def test_missing_files_name_the_expected_path_and_source(result, key, rel):
    kind, msg = result[key]
    assert kind == "FileNotFoundError"
    assert rel in msg and "huggingface.co/fudan-generative-ai/hallo" in msg
    assert result["registered"][0] in msg  # the models/hallo folder it looked in


def test_audio_errors_are_clear(result):
    shape, sr, warned = result["silence"]
    assert shape == [2, 44100] and sr == 44100
    assert any("the audio is digital silence (audio): the face will not move" in w for w in warned), warned
    assert result["too_short"][0] == "UserError" and "shorter than one video frame" in result["too_short"][1]
    assert result["bad_audio"][0] == "UserError" and "expected an AUDIO value" in result["bad_audio"][1]
    assert result["nan_audio"] == ["UserError", "the audio holds NaN or infinite samples (first at 0.50 s) (audio): "
                                                "re-export the audio as ordinary PCM (e.g. 16-bit WAV)"]
    assert result["empty_audio"] == ["UserError", "the audio holds no samples (audio): give a speech recording"]


def test_face_errors_are_clear(result):
    assert "multiple of 64" in result["size_check"]
    assert "face_expand_ratio" in result["ratio_check"]
    assert result["ok_check"] is True
    assert result["bad_image"][0] == "ValueError" and "[B,H,W,C]" in result["bad_image"][1]
    if result["landmarks_missing"]:
        pytest.skip(result["landmarks_missing"])
    kind, msg = result["no_face"]
    assert kind == "UserError" and msg.startswith("no face found") and "(image): " in msg


def test_sampler_and_long_video_validation(result):
    assert "output folder" in result["prefix_check"]
    assert "mask_rate" in result["mask_check"]
    assert "steps" in result["steps_check"]

