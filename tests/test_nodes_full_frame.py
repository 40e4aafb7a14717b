"""The face node on any photo and the paste-back node, called inside ComfyUI's Python on the real fixtures.

Faces are found by the tiny folder's SCRFD, a constant graph that reports one face in the middle of the
letterboxed image (so a square portrait's face fills it, and on a landscape the box sits in the middle), or
by a stub with fixed boxes for the two-face picture. Landmarks are real: mediapipe's legacy FaceMesh where
ComfyUI's mediapipe has it, else the Tasks path on a bundle of real mediapipe models
(HALLO_MEDIAPIPE_LEGACY_WHEEL); without either the module skips. Skipped without COMFYUI_PATH.
"""

import pytest

from tests.comfy_server import run_in_comfy_python, shared_fixtures

SCRIPT = """
    import numpy as np
    from PIL import Image
    ext = importlib.import_module(name + ".nodes.extension")
    ext.setup()
    L = importlib.import_module(name + ".nodes.loaders")
    F = importlib.import_module(name + ".nodes.face").HalloFaceAnalysis
    P = importlib.import_module(name + ".nodes.paste_back").HalloPasteBack
    tiny = load_support("models_folder")
    err = load_support("outcome").err
    spec = importlib.util.spec_from_file_location("hallo_landmarks_env",
                                                  os.path.join(repo, "tests", "landmarks_env.py"))
    lenv = importlib.util.module_from_spec(spec); spec.loader.exec_module(lenv)
    from hallo_core.face import prepare_face
    from hallo_core.face.find import FaceBox, _DETECTORS
    from hallo_core.face.landmarks import TASK_FILENAME

    root = tempfile.mkdtemp()
    out_dir = tempfile.mkdtemp()
    folder_paths.set_output_directory(out_dir)
    tiny.write_tiny_face_models(root)
    folder_paths.folder_names_and_paths["hallo"] = ([root], set())
    if lenv.offline_landmarks_skip_reason():
        task = os.path.join(root, "face_analysis", "models", TASK_FILENAME)
        if not lenv.write_tasks_bundle(task):
            print(json.dumps({"skip": lenv.offline_landmarks_skip_reason()})); sys.exit(0)
    fm = L.HalloFaceModelLoader.execute(onnx_device="cpu").result[0]
    fixtures = os.environ["FIXTURES"]
    res = {}

    def portrait(n, side=None):
        im = Image.open(os.path.join(fixtures, f"portrait_{n}.jpg")).convert("RGB")
        if side:
            im = im.resize((side, side), Image.LANCZOS)
        return np.asarray(im)

    def image(rgb):
        return torch.from_numpy(rgb.copy()).float().div(255.0)[None]


    def analyse(img, **kw):
        args = dict(face_models=fm, image=img, size=128, mode="auto", face_expand_ratio=1.2, no_face="error")
        args.update(kw)
        return F.execute(**args).result

    # square portraits: the node's default path is today's whole-image call, field for field
    fields = lambda d: [d.pixels, d.face_region, d.face_emb, d.landmarks, *d.full_masks, *d.face_masks, *d.lip_masks]
    res["square"] = {}
    for n in (2, 5, 6):
        rgb = portrait(n)
        today = prepare_face(rgb, fm.models_dir, size=128, use_cache=False)
        outs = {m: analyse(image(rgb), mode=m) for m in ("auto", "stretch")}
        res["square"][n] = {m: [all(torch.equal(a, b) for a, b in zip(fields(o[0]), fields(today))),
                                o[0].face_box == today.face_box, o[0].crop_box, list(o[0].source_size),
                                list(o[6].shape)] for m, o in outs.items()}

    # a landscape: the crop is carried for paste-back
    canvas = np.full((720, 1280, 3), (90, 110, 130), np.uint8)
    canvas[160:560, 440:840] = portrait(6, 400)
    land = analyse(image(canvas))
    face = land[0]
    res["land"] = {"crop": list(face.crop_box), "source": list(face.source_size), "ref": list(land[1].shape),
                   "preview": list(land[6].shape)}
    res["land_index"] = err(lambda: analyse(image(canvas), face_index=1))
    # the node's face data is the engine's framing call, the CLI's (only the paste-back is left to the graph)
    from hallo_core.pipeline.full_frame import frame_input
    engine = {m: frame_input(canvas, fm.models_dir, size=128, frame=m, paste_back=False) for m in ("auto", "crop",
                                                                                                 "stretch")}
    res["land_engine"] = {m: [all(torch.equal(a, b) for a, b in zip(fields(analyse(image(canvas), mode=m)[0]),
                                                                     fields(e.face))), e.mode]
                          for m, e in engine.items()}
    flat = np.full((300, 400, 3), 200, np.uint8)
    res["blank"] = err(lambda: analyse(image(flat)))
    res["checks"] = [F.validate_inputs(size=100, face_expand_ratio=1.2),
                     F.validate_inputs(size=512, face_expand_ratio=1.2, face_index=-2),
                     F.validate_inputs(size=512, face_expand_ratio=1.2, margin=5.0),
                     F.validate_inputs(size=512, face_expand_ratio=1.2, face_index=3, margin=0.5)]

    # paste back, image mode: full frame at the photo's size; outside the crop the photo's own bytes
    gen = torch.rand(3, 128, 128, 3)
    full = P.execute(face_data=face, source=image(canvas), frames=gen, max_side=1920, feather=0.08,
                     output_mode="image", filename_prefix="t/full").result[0]
    x0, y0, x1, y1 = face.crop_box
    keep = np.ones((720, 1280), bool)
    keep[max(y0, 0):y1, max(x0, 0):x1] = False
    u8 = (full.numpy() * 255).round().astype(np.uint8)
    res["paste"] = {"shape": list(full.shape), "outside_equal": bool((u8[:, keep] == canvas[keep]).all()),
                    "inside_changed": bool((u8[:, ~keep] != canvas[~keep]).any())}
    from hallo_core.io.paste_back import paster_for
    res["paste_is_engine"] = bool(torch.equal(full, torch.from_numpy(paster_for(face, canvas).paste(gen)).float() / 255))
    small = P.execute(face_data=face, source=image(canvas), frames=gen, max_side=640, feather=0.08,
                      output_mode="image", filename_prefix="t/full").result[0]
    res["paste_small"] = list(small.shape)
    res["paste_mismatch"] = err(lambda: P.execute(face_data=face, source=image(portrait(6)), frames=gen,
                                max_side=1920, feather=0.08, output_mode="image", filename_prefix="t/full"))
    res["paste_checks"] = [P.validate_inputs(max_side=10, feather=0.08, filename_prefix="a"),
                           P.validate_inputs(max_side=1920, feather=0.08, filename_prefix="../x"),
                           P.validate_inputs(max_side=1920, feather=0.08, filename_prefix="hallo/x")]
    # file mode from IMAGE frames and AUDIO: a complete mp4 with sound
    audio = {"waveform": 0.1 * torch.randn(1, 1, 16000 * 3 // 25), "sample_rate": 16000}
    out = P.execute(face_data=face, source=image(canvas), frames=gen, max_side=1920, feather=0.08,
                    output_mode="file", filename_prefix="t/full", fps=25.0, audio=audio)
    import av
    path = out.result[1].get_stream_source()
    with av.open(path) as c:
        res["file"] = [c.streams.video[0].codec_context.width, c.streams.video[0].codec_context.height,
                       sum(1 for _ in c.decode(video=0)), len(c.streams.audio)]
    res["file_leftovers"] = sorted(os.listdir(os.path.dirname(path)))

    # two faces: face_index counts left to right (a stub detector gives the boxes)
    pair = np.concatenate([portrait(2, 500), portrait(6, 500)], 1)
    class Two:
        name = "stub"
        def detect(self, rgb):
            return [FaceBox((620.0, 110.0, 880.0, 400.0), 0.9), FaceBox((140.0, 120.0, 360.0, 390.0), 0.9)]
    det_path = os.path.join(root, "face_analysis", "models", "scrfd_10g_bnkps.onnx")
    _DETECTORS[("scrfd", os.path.abspath(det_path), ())] = Two()
    right = analyse(image(pair), face_index=1)
    left = analyse(image(pair), face_index=0)
    pv = (right[6][0].numpy() * 255).round().astype(np.uint8)
    res["pair"] = {"right": list(right[0].crop_box), "left": list(left[0].crop_box),
                   "green": pv[255, 620].tolist(), "other": pv[255, 140].tolist(),
                   "missing": err(lambda: analyse(image(pair), face_index=2))}
    class Tiny:
        name = "stub"
        def detect(self, rgb):
            return [FaceBox((100.0, 100.0, 140.0, 150.0), 0.9)]
    _DETECTORS[("scrfd", os.path.abspath(det_path), ())] = Tiny()
    res["too_small"] = err(lambda: analyse(image(pair)))
    class NoFace:
        name = "stub"
        def detect(self, rgb):
            return []
    _DETECTORS[("scrfd", os.path.abspath(det_path), ())] = NoFace()
    whole = analyse(image(canvas), no_face="fallback")
    res["fallback"] = {"crop": whole[0].crop_box, "preview": list(whole[6].shape), "ref": list(whole[1].shape),
                       "indexed": err(lambda: analyse(image(canvas), no_face="fallback", face_index=0)),
                       "error": err(lambda: analyse(image(canvas)))}
    print(json.dumps(res))
"""


@pytest.fixture(scope="module")
def result():
    res = run_in_comfy_python(SCRIPT, FIXTURES=str(shared_fixtures()))
    if "skip" in res:
        pytest.skip(res["skip"])
    return res


@pytest.mark.parametrize("n", ["2", "5", "6"])
def test_square_portrait_keeps_todays_face_data(result, n):
    for mode, (same, same_box, crop, source, preview) in result["square"][n].items():
        assert same and same_box, f"portrait {n}, mode {mode}: face data differs from today's whole-image call"
        assert crop is None and source[0] == source[1] and preview[:1] == [1] and preview[-1] == 3


def test_landscape_carries_the_crop(result):
    land = result["land"]
    x0, y0, x1, y1 = land["crop"]
    assert land["source"] == [1280, 720] and x1 - x0 == y1 - y0
    assert x0 < 640 < x1  # on the middle of the frame, where the stub detector and the portrait's face are
    assert land["ref"] == [1, 128, 128, 3] and land["preview"] == [1, 720, 1280, 3]


def test_face_errors_use_the_cli_words(result):
    kind, msg = result["land_index"]
    assert kind == "UserError"
    assert msg == ("face index 1 does not exist (face_index): 1 face was found, numbered 0 (leftmost) to 0 "
                   "(rightmost): pick one of those")
    kind, msg = result["blank"]
    assert kind == "UserError" and msg.startswith("the image is almost blank") and "(image): use a photo" in msg
    size, index, margin, ok = result["checks"]
    assert size.startswith("size is 100, outside the range it accepts (size):") and "multiple of 64" in size
    assert index.startswith("face_index is -2, outside the range") and "-1 takes the largest face" in index
    assert margin.startswith("margin is 5, outside the range")
    assert ok is True


def test_paste_back_image_mode_keeps_the_photo_outside_the_crop(result):
    paste = result["paste"]
    assert paste["shape"] == [3, 720, 1280, 3]
    assert paste["outside_equal"] and paste["inside_changed"] and result["paste_is_engine"]
    assert result["paste_small"] == [3, 360, 640, 3]
    kind, msg = result["paste_mismatch"]
    assert kind == "UserError" and "the source image is 624x624, but the face data was made from a 1280x720" in msg
    low, prefix, ok = result["paste_checks"]
    assert low.startswith("max_side is 10, outside the range") and "output folder" in prefix and ok is True


def test_paste_back_file_mode_writes_a_complete_mp4(result):
    assert result["file"] == [1280, 720, 3, 1]
    assert not [f for f in result["file_leftovers"] if "partial" in f]


def test_face_index_counts_left_to_right(result):
    pair = result["pair"]
    assert pair["right"][0] >= 500 and pair["left"][0] + (pair["left"][2] - pair["left"][0]) / 2 < 500
    assert pair["green"] == [0, 220, 0] and pair["other"] == [255, 200, 0]
    kind, msg = pair["missing"]
    assert kind == "UserError" and "face index 2 does not exist (face_index): 2 faces were found" in msg
    assert result["too_small"] == ["UserError", "face 0 is only 50 pixels across; at least 64 are needed to animate "
                                                "it (image): use a larger photo, or one taken closer to the face"]


def test_face_node_is_the_engines_framing_call(result):
    assert result["land_engine"] == {"auto": [True, "crop"], "crop": [True, "crop"], "stretch": [True, "whole"]}


def test_no_face_fallback_follows_the_cli(result):
    """No face found: fallback animates the whole photo; a face asked for by index stays an error."""
    fb = result["fallback"]
    assert fb["crop"] is None and fb["preview"] == [1, 720, 1280, 3] and fb["ref"] == [1, 128, 128, 3]
    for kind, msg in (fb["indexed"], fb["error"]):
        assert kind == "UserError" and msg.startswith("no face found in the 1280x720 image (image): ")
