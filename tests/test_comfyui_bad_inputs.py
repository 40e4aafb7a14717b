"""Bad inputs queued on a real ComfyUI server (CPU, tiny models in the official layout), node side of issue 14.

Each case is the portrait workflow's API twin with one input made bad. What must hold:

- a widget value out of range is refused when the prompt is queued (``validate_inputs``), with the words of
  the shared option table (hallo_core.checks);
- NaN/inf, empty or too-short AUDIO and a face-less, blank or wrongly indexed IMAGE stop the prompt in the
  audio embeds or face node, so the sampler never starts, with the CLI's words (only the place named
  differs: the node input instead of ``--audio`` / ``--image``);
- digital silence is a warning, not an error, as on the CLI: the video is made.

Skipped without COMFYUI_PATH, and where the server's Python cannot run real face landmarks (see
tests/comfy_server.py, prepare_landmarks).
"""

from __future__ import annotations

import json
import os
import urllib.error
import uuid
from pathlib import Path

import pytest

if not os.environ.get("COMFYUI_PATH"):
    pytest.skip("COMFYUI_PATH is not set: these tests queue prompts on a real ComfyUI (see docs/comfyui.md)",
                allow_module_level=True)

from tests import workflow_format as wf  # noqa: E402
from tests.comfy_server import SHORT_SECONDS, face_server  # noqa: E402

OVERRIDES = {"LoadAudio": {"audio": "hallo_speech_short.wav"}, "Hallo_FaceAnalysis": {"size": 128},
             "Hallo_Sampler": {"steps": 2}}
NAN_AT = 0.5  # seconds


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import numpy as np
    import soundfile as sf
    from PIL import Image

    with face_server(tmp_path_factory.mktemp("comfy_bad")) as (srv, fixtures_dir):
        inp = srv.root / "input"
        data, sr = sf.read(str(fixtures_dir / "speech_1.wav"), dtype="float32")
        data = data[: int(SHORT_SECONDS * sr)].copy()
        for name, bad in (("hallo_nan.wav", np.nan), ("hallo_inf.wav", np.inf)):
            d = data.copy()
            d[int(NAN_AT * sr)] = bad
            sf.write(str(inp / name), d, sr, subtype="FLOAT")
        ramp = np.linspace(0, 255, 256, dtype=np.float32)
        gradient = np.stack([np.tile(ramp, (256, 1)), np.tile(ramp[:, None], (1, 256)),
                             np.full((256, 256), 90, np.float32)], axis=2).astype(np.uint8)
        Image.fromarray(gradient).save(inp / "hallo_gradient.png")
        noise = np.random.RandomState(0).randint(0, 3, (300, 400, 3)).astype(np.uint8)  # JPEG-like grain
        flat = np.full((300, 400, 3), 200, np.uint8) + noise
        Image.fromarray(flat).save(inp / "hallo_flat.png")
        yield srv


def _prompt(**changes) -> dict:
    """The portrait twin with CPU overrides; ``changes``: {node class: {input: value}}."""
    api = wf.load(wf.twin_path("hallo_portrait_to_video"))
    for node in api.values():
        node["inputs"].update(OVERRIDES.get(node["class_type"], {}))
        node["inputs"].update(changes.get(node["class_type"], {}))
    return api


def _empty_audio(api: dict, seconds: float) -> dict:
    """Replace Load Audio by core Empty Audio (zeros) of ``seconds``."""
    (nid,) = [k for k, v in api.items() if v["class_type"] == "LoadAudio"]
    api[nid] = {"class_type": "EmptyAudio", "inputs": {"duration": seconds, "sample_rate": 16000, "channels": 1}}
    return api


def _run_error(srv, api: dict) -> dict:
    """The execution error of ``api``, after checking that no sampler ran before it."""
    entry = srv.wait(srv.queue(api))
    errors = [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"]
    assert entry["status"]["status_str"] == "error" and len(errors) == 1, entry["status"]
    err = errors[0]
    ran = {api[n]["class_type"] for n in err["executed"] if n in api}
    assert not ran & {"Hallo_Sampler", "Hallo2_LongVideo"}, ran
    err["exception_message"] = err["exception_message"].strip()  # ComfyUI ends it with a newline
    return err


def _rejected(srv, api: dict) -> str:
    """The node errors /prompt answers for a prompt refused before anything runs."""
    try:
        srv.post("/prompt", {"prompt": api, "client_id": uuid.uuid4().hex})
    except urllib.error.HTTPError as e:
        assert e.code == 400
        return json.dumps(json.loads(e.read().decode())["node_errors"])
    raise AssertionError("the prompt was accepted")


def _assert_stopped_in(err: dict, node_type: str, message: str) -> None:
    assert err["node_type"] == node_type, err
    assert err["exception_type"].endswith("UserError"), err["exception_type"]
    assert err["exception_message"] == message


@pytest.mark.parametrize("name, word", [("hallo_nan.wav", "NaN"), ("hallo_inf.wav", "infinite")])
def test_non_finite_audio_stops_in_the_audio_node(server, name, word):
    err = _run_error(server, _prompt(LoadAudio={"audio": name}))
    _assert_stopped_in(err, "Hallo_AudioEmbeds",
                       f"the audio holds NaN or infinite samples (first at {NAN_AT:.2f} s) (audio): re-export the "
                       "audio as ordinary PCM (e.g. 16-bit WAV)")


@pytest.mark.parametrize("seconds, message", [
    (0.0, "the audio holds no samples (audio): give a speech recording"),
    (0.01, "the audio is 0.010 s long, shorter than one video frame (0.04 s) (audio): give at least a second of "
           "speech"),
])
def test_empty_or_too_short_audio_stops_in_the_audio_node(server, seconds, message):
    err = _run_error(server, _empty_audio(_prompt(), seconds))
    _assert_stopped_in(err, "Hallo_AudioEmbeds", message)


def test_faceless_image_stops_in_the_face_node(server):
    err = _run_error(server, _prompt(LoadImage={"image": "hallo_gradient.png"}))
    assert err["node_type"] == "Hallo_FaceAnalysis" and err["exception_type"].endswith("UserError")
    msg = err["exception_message"]
    assert msg.startswith("no face found") and "(image): use a" in msg and "or use no_face fallback" in msg


def test_blank_image_and_missing_face_index_stop_in_the_face_node(server):
    err = _run_error(server, _prompt(LoadImage={"image": "hallo_flat.png"}))
    assert err["node_type"] == "Hallo_FaceAnalysis"
    assert err["exception_message"].startswith("the image is almost blank (one flat colour")
    assert err["exception_message"].endswith("(image): use a photo with a visible face")
    err = _run_error(server, _prompt(Hallo_FaceAnalysis={"face_index": 3}))
    _assert_stopped_in(err, "Hallo_FaceAnalysis", "face index 3 does not exist (face_index): 1 face was found, "
                                                  "numbered 0 (leftmost) to 0 (rightmost): pick one of those")


@pytest.mark.parametrize("inputs, words", [
    ({"size": 100}, "size is 100, outside the range it accepts (size): give a whole number from 64 to 2048, a "
                    "multiple of 64 (default 512)"),
    ({"face_index": -3}, "face_index is -3, outside the range it accepts (face_index)"),
    ({"margin": 9.0}, "margin is 9, outside the range it accepts (margin)"),
    ({"face_expand_ratio": 5.0}, "face_expand_ratio is 5, outside the range it accepts (face_expand_ratio)"),
])
def test_face_widgets_out_of_range_are_refused_when_queued(server, inputs, words):
    errors = _rejected(server, _prompt(Hallo_FaceAnalysis=inputs))
    assert words in errors and "custom_validation_failed" in errors


def test_silent_audio_warns_and_the_video_is_made(server):
    entry = server.wait(server.queue(_empty_audio(_prompt(), SHORT_SECONDS)))
    assert entry["status"]["status_str"] == "success", entry["status"]
    saved = [i for ui in entry["outputs"].values() for i in ui.get("images", []) + ui.get("videos", [])
             if i["filename"].endswith(".mp4")]
    assert len(saved) == 1 and (server.root / "output" / saved[0]["subfolder"] / saved[0]["filename"]).is_file()
    log = Path(server.log).read_text()
    assert "the audio is digital silence (audio): the face will not move; the video is made anyway" in log
