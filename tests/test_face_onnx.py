"""SCRFD decoding, ArcFace alignment/embedding and the identity path of prepare_face.

The real insightface ONNX files are not available to the tests, so tiny graphs with the same
input/output signature are built here with the onnx package: SCRFD takes 'input.1'
[1, 3, ?, ?] and returns 9 outputs named like scrfd_10g_bnkps ('448', '471', '494' scores,
'451', '474', '497' boxes, '454', '477', '500' key points; strides 8, 16, 32, 2 anchors,
rows ordered (y, x, anchor)); ArcFace takes [1, 3, 112, 112] and returns [1, 512].
"""

import importlib.util
import math

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

# onnx is imported by the graph builders, not at collection, where it would take seconds
if importlib.util.find_spec("onnx") is None:
    pytest.skip("onnx is not installed (requirements-test.txt)", allow_module_level=True)
pytest.importorskip("onnxruntime")

from hallo_core.face import ArcFace, NoFaceError, SCRFD, alignment_matrix, prepare_face, umeyama  # noqa: E402
from hallo_core.face.detect import letterbox, nms  # noqa: E402
from hallo_core.face.embed import ARCFACE_TEMPLATE, _graph_normalisation  # noqa: E402
from hallo_core.face.landmarks import LandmarkerUnavailableError, get_landmarker  # noqa: E402
from hallo_core.face.runtime import resolve_providers  # noqa: E402

STRIDES = (8, 16, 32)
OUT_NAMES = {"score": ("448", "471", "494"), "bbox": ("451", "474", "497"), "kps": ("454", "477", "500")}
RED, GREEN = (255, 0, 0), (0, 255, 0)
P = (255 - 127.5) / 128.0  # a saturated channel after SCRFD's input normalisation


def _save(graph, path):
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


def _init(name, arr):
    from onnx import numpy_helper

    return numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name)


def scrfd_graph(path, score_w, score_b, bbox_w, bbox_b, kps_w, kps_b, extra32=None):
    """Per stride: AveragePool(stride) -> 1x1 convs -> (y, x, anchor)-ordered rows.

    *_w[s]: [C_out, 3] weights, *_b[s]: [C_out] biases; extra32: constant [1, 2, 20, 20]
    logits added at stride 32 (only valid for the 640 canvas).
    """
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, outs = [], [], {}
    for s in STRIDES:
        nodes.append(helper.make_node("AveragePool", ["input.1"], [f"p{s}"], kernel_shape=[s, s], strides=[s, s]))
        heads = (("score", score_w, score_b, 1), ("bbox", bbox_w, bbox_b, 4), ("kps", kps_w, kps_b, 10))
        for kind, w, b, width in heads:
            wt = np.asarray(w[s], np.float32)
            inits += [_init(f"{kind}{s}_w", wt[:, :, None, None]), _init(f"{kind}{s}_b", b[s])]
            x = f"{kind}{s}_conv"
            nodes.append(helper.make_node("Conv", [f"p{s}", f"{kind}{s}_w", f"{kind}{s}_b"], [x]))
            if kind == "score":
                if extra32 is not None and s == 32:
                    inits.append(_init("extra32", extra32))
                    nodes.append(helper.make_node("Add", [x, "extra32"], [x + "_plus"]))
                    x += "_plus"
                nodes.append(helper.make_node("Sigmoid", [x], [x + "_sig"]))
                x += "_sig"
            nodes.append(helper.make_node("Transpose", [x], [x + "_t"], perm=[0, 2, 3, 1]))
            inits.append(numpy_helper.from_array(np.array([-1, width], np.int64), f"{kind}{s}_shape"))
            name = OUT_NAMES[kind][STRIDES.index(s)]
            nodes.append(helper.make_node("Reshape", [x + "_t", f"{kind}{s}_shape"], [name]))
            outs[name] = width
    order = OUT_NAMES["score"] + OUT_NAMES["bbox"] + OUT_NAMES["kps"]
    graph = helper.make_graph(
        nodes, "scrfd_test",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, "?", "?"])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["?", outs[n]]) for n in order], inits)
    return _save(graph, path)


def arcface_graph(path, seed=0, mxnet_names=False):
    """[1,3,112,112] -> AveragePool 16 -> flatten (147) -> MatMul + bias -> [1, 512]."""
    from onnx import TensorProto, helper

    rng = np.random.RandomState(seed)
    w = rng.normal(0, 0.1, (147, 512)).astype(np.float32)
    b = rng.normal(0, 0.1, (512,)).astype(np.float32)
    nodes, inits, x = [], [_init("W", w), _init("B", b)], "input.1"
    if mxnet_names:  # converted MXNet models start with _minus / _mul nodes
        inits += [_init("zero", 0.0), _init("one", 1.0)]
        nodes += [helper.make_node("Sub", [x, "zero"], ["m0"], name="_minus0"),
                  helper.make_node("Mul", ["m0", "one"], ["m1"], name="_mul0")]
        x = "m1"
    nodes += [helper.make_node("AveragePool", [x], ["pool"], kernel_shape=[16, 16], strides=[16, 16], name="pool0"),
              helper.make_node("Flatten", ["pool"], ["flat"], name="flatten0"),
              helper.make_node("MatMul", ["flat", "W"], ["mm"], name="fc0"),
              helper.make_node("Add", ["mm", "B"], ["683"], name="fc_bias0")]
    graph = helper.make_graph(nodes, "arcface_test",
                              [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, 112, 112])],
                              [helper.make_tensor_value_info("683", TensorProto.FLOAT, [1, 512])], inits)
    return _save(graph, path), w, b


def arcface_reference(crop_rgb, w, b, mean=127.5, std=127.5):
    """numpy forward of arcface_graph on an aligned RGB crop."""
    x = (crop_rgb.astype(np.float64) - mean) / std  # [112, 112, 3]
    pooled = x.reshape(7, 16, 7, 16, 3).mean(axis=(1, 3))  # [7, 7, 3]
    return pooled.transpose(2, 0, 1).reshape(-1) @ w + b


def _channel_detector(tmp_path, name="det.onnx", kps_off=None):
    """Fires on pure red stride-32 cells (anchor 0) and pure green stride-16 cells (anchor 0)."""
    score_w = {8: np.zeros((2, 3)), 16: np.array([[0, 10, 0], [0, 0, 0]]), 32: np.array([[10, 0, 0], [0, 0, 0]])}
    score_b = {8: [-10, -10], 16: [0, -10], 32: [0, -10]}
    bbox_b = {8: [1] * 8, 16: [0.5] * 8, 32: [1, 1, 2, 2] * 2}
    kps_off = kps_off if kps_off is not None else [0.25, 0.5, 0.75, 0.5, 0.5, 0.75, 0.3, 1.0, 0.7, 1.0]
    kps_b = {s: list(kps_off) * 2 for s in STRIDES}
    return scrfd_graph(tmp_path / name, score_w, score_b, {s: np.zeros((8, 3)) for s in STRIDES}, bbox_b,
                       {s: np.zeros((20, 3)) for s in STRIDES}, kps_b)


def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


# ---- detection --------------------------------------------------------------------------------

def test_scrfd_decodes_a_known_face(tmp_path):
    det = SCRFD(_channel_detector(tmp_path))
    img = np.zeros((960, 1280, 3), np.uint8)  # letterboxed to 640x480: scale 0.5
    img[256:320, 320:384] = RED  # -> canvas cell (x=5, y=4) at stride 32, anchor centre (160, 128)
    d = det.detect(img)
    assert len(d) == 1
    np.testing.assert_allclose(d.boxes[0], [(160 - 32) * 2, (128 - 32) * 2, (160 + 64) * 2, (128 + 64) * 2], atol=1e-4)
    assert d.scores[0] == pytest.approx(_sigmoid(10 * P), abs=1e-6)
    off = np.array([0.25, 0.5, 0.75, 0.5, 0.5, 0.75, 0.3, 1.0, 0.7, 1.0]).reshape(5, 2) * 32
    np.testing.assert_allclose(d.kps[0], (np.array([160, 128]) + off) * 2, atol=1e-4)
    assert d.boxes.dtype == np.float32 and d.kps.shape == (1, 5, 2)


def test_scrfd_two_faces_nms_and_tall_letterbox(tmp_path):
    det = SCRFD(_channel_detector(tmp_path))
    img = np.zeros((1280, 640, 3), np.uint8)  # tall: letterboxed to 320x640, scale 0.5
    img[128:192, 64:128] = RED  # stride 32 cell (1, 2): box 96 canvas px
    img[1024:1056, 512:544] = GREEN  # stride 16 cell (16, 32): box 16 canvas px
    d = det.detect(img)
    assert len(d) == 2
    big = d.largest()
    # red cell (x=1, y=2) of the 320x640 canvas: anchor (32, 64), box (0, 32, 96, 128) / 0.5
    np.testing.assert_allclose(d.boxes[big], [0, 64, 192, 256], atol=1e-4)
    small = 1 - big
    np.testing.assert_allclose(d.boxes[small], [(256 - 8) * 2, (512 - 8) * 2, (256 + 8) * 2, (512 + 8) * 2], atol=1e-4)
    # two horizontally adjacent red cells give boxes with IoU > 0.4: NMS keeps one
    img2 = np.zeros((640, 640, 3), np.uint8)
    img2[64:96, 64:128] = RED
    assert len(det.detect(img2)) == 1
    # cells two apart overlap by less than 0.4 (IoU of 96-px boxes 64 px apart ~ 0.2): both kept
    img3 = np.zeros((640, 640, 3), np.uint8)
    img3[64:96, 64:96] = RED
    img3[64:96, 128:160] = RED
    assert len(det.detect(img3)) == 2


def _naive_detect(session, rgb, thresh, nms_thresh, size):
    """Loop-by-loop restatement of SCRFD post-processing for comparison."""
    canvas, scale = letterbox(rgb, size, size)
    blob = ((canvas.astype(np.float32) - 127.5) / 128.0).transpose(2, 0, 1)[None]
    outs = session.run(None, {"input.1": blob})
    found = []
    for si, s in enumerate(STRIDES):
        sc, bb, kp = outs[si], outs[si + 3], outs[si + 6]
        n = size // s
        for row in range(n * n * 2):
            if sc[row, 0] < thresh:
                continue
            cell = row // 2
            cx, cy = (cell % n) * s, (cell // n) * s
            d = bb[row] * s
            box = [(cx - d[0]) / scale, (cy - d[1]) / scale, (cx + d[2]) / scale, (cy + d[3]) / scale]
            found.append((float(sc[row, 0]), box))
    found.sort(key=lambda t: -t[0])
    kept = []
    for score, box in found:
        ok = True
        for _, k in kept:
            iw = max(0.0, min(box[2], k[2]) - max(box[0], k[0]) + 1)
            ih = max(0.0, min(box[3], k[3]) - max(box[1], k[1]) + 1)
            a1 = (box[2] - box[0] + 1) * (box[3] - box[1] + 1)
            a2 = (k[2] - k[0] + 1) * (k[3] - k[1] + 1)
            if iw * ih / (a1 + a2 - iw * ih) > nms_thresh:
                ok = False
                break
        if ok:
            kept.append((score, box))
    return kept


def test_scrfd_random_graph_matches_naive_decoder(tmp_path):
    rng = np.random.RandomState(3)
    rnd = lambda r, c: {s: rng.normal(0, 1, (r, c)) for s in STRIDES}  # noqa: E731
    score_b = {s: [-1.0, -1.5] for s in STRIDES}
    bbox_b = {s: rng.uniform(0.5, 3, 8) for s in STRIDES}
    score_w = {s: rng.normal(0, 4, (2, 3)) for s in STRIDES}
    kps_b = {s: rng.normal(0, 1, 20) for s in STRIDES}
    path = scrfd_graph(tmp_path / "rand.onnx", score_w, score_b, rnd(8, 3), bbox_b, rnd(20, 3), kps_b)
    det = SCRFD(path, det_size=256)
    img = rng.randint(0, 256, (640, 640, 3)).astype(np.uint8)  # square: no padding, so no tied scores
    img = cv2.normalize(cv2.GaussianBlur(img, (31, 31), 0), None, 0, 255, cv2.NORM_MINMAX)  # smooth blobs
    got = det.detect(img)
    ref = _naive_detect(det.session, img, 0.5, 0.4, 256)
    assert len(got) == len(ref) > 3
    np.testing.assert_allclose(got.scores, [r[0] for r in ref], rtol=1e-6)
    np.testing.assert_allclose(got.boxes, np.array([r[1] for r in ref]), rtol=1e-5, atol=1e-3)


def test_nms_plus_one_convention():
    dets = np.array([[0, 0, 9, 9, 0.9], [5, 0, 14, 9, 0.8], [7, 0, 16, 9, 0.7], [100, 100, 110, 110, 0.6]], np.float32)
    # IoU(0,1) with +1 areas = 50/150 = 0.333 -> kept; IoU(0,2) = 30/170; IoU(1,2) = 80/120 -> suppressed
    assert nms(dets, 0.4) == [0, 1, 3]
    assert nms(dets, 0.3) == [0, 2, 3]


# ---- alignment and embedding -------------------------------------------------------------------

def _similarity(scale, theta, tx, ty):
    c, s = scale * math.cos(theta), scale * math.sin(theta)
    return np.array([[c, -s, tx], [s, c, ty], [0, 0, 1]], np.float64)


def test_umeyama_recovers_a_known_similarity():
    rng = np.random.RandomState(0)
    src = rng.uniform(0, 200, (5, 2))
    t = _similarity(0.7, 0.4, 13.0, -8.5)
    dst = src @ t[:2, :2].T + t[:2, 2]
    np.testing.assert_allclose(umeyama(src, dst), t, atol=1e-10)
    # with noise it is the least-squares similarity: closed form with complex numbers
    noisy = dst + rng.normal(0, 2, dst.shape)
    z, w = src[:, 0] + 1j * src[:, 1], noisy[:, 0] + 1j * noisy[:, 1]
    a = np.sum((w - w.mean()) * np.conj(z - z.mean())) / np.sum(np.abs(z - z.mean()) ** 2)
    bshift = w.mean() - a * z.mean()
    m = umeyama(src, noisy)
    np.testing.assert_allclose(m[:2, :], [[a.real, -a.imag, bshift.real], [a.imag, a.real, bshift.imag]], atol=1e-9)
    # a mirrored point set still gives a rotation (no reflection)
    assert np.linalg.det(umeyama(src, src * np.array([-1, 1]))[:2, :2]) > 0


def test_alignment_maps_keypoints_onto_the_template():
    t = _similarity(1.9, -0.3, 220.0, 140.0)  # template -> image
    kps = (ARCFACE_TEMPLATE.astype(np.float64) @ t[:2, :2].T + t[:2, 2]).astype(np.float32)
    m = alignment_matrix(kps, 112)
    np.testing.assert_allclose(m, np.linalg.inv(t)[:2], rtol=1e-5, atol=2e-5)
    m224 = alignment_matrix(kps, 224)
    np.testing.assert_allclose(m224, (np.diag([2, 2, 1]) @ np.linalg.inv(t))[:2], rtol=1e-5, atol=5e-5)
    with pytest.raises(ValueError):
        alignment_matrix(kps[:4], 112)


def test_arcface_embedding_of_a_warped_face(tmp_path):
    path, w, b = arcface_graph(tmp_path / "rec.onnx")
    rec = ArcFace(path)
    assert (rec.input_mean, rec.input_std, rec.input_size) == (127.5, 127.5, (112, 112))
    rng = np.random.RandomState(1)
    face = cv2.resize(rng.randint(0, 256, (14, 14, 3)).astype(np.uint8), (112, 112), interpolation=cv2.INTER_CUBIC)
    t = _similarity(2.5, 0.35, 300.0, 120.0)  # template -> image
    img = cv2.warpAffine(face, t[:2], (640, 480))
    kps = (ARCFACE_TEMPLATE.astype(np.float64) @ t[:2, :2].T + t[:2, 2]).astype(np.float32)
    emb = rec.embed(img, kps)
    assert emb.shape == (512,) and emb.dtype == np.float32
    crop = cv2.warpAffine(img, np.linalg.inv(t)[:2], (112, 112), borderValue=0.0)
    np.testing.assert_allclose(emb, arcface_reference(crop, w, b), atol=2e-3)
    # the crop is the face back again (up to two bilinear resamplings)
    assert np.abs(crop[8:-8, 8:-8].astype(int) - face[8:-8, 8:-8]).mean() < 6


def test_arcface_normalisation_rule(tmp_path):
    plain, _, _ = arcface_graph(tmp_path / "a.onnx")
    mx, w, b = arcface_graph(tmp_path / "b.onnx", mxnet_names=True)
    assert _graph_normalisation(plain) == (127.5, 127.5)
    assert _graph_normalisation(mx) == (0.0, 1.0)
    crop = np.random.RandomState(2).randint(0, 256, (112, 112, 3)).astype(np.uint8)
    expect = arcface_reference(crop, w, b, 0.0, 1.0)
    np.testing.assert_allclose(ArcFace(mx).embed_aligned(crop), expect, rtol=1e-4, atol=1e-3)


# ---- identity inside prepare_face -------------------------------------------------------------

def _located_detector(path, cell_xy, box=(3, 3, 3, 3), kps_off=(-1, -0.5, 1, -0.5, 0, 0.3, -0.8, 1.5, 0.8, 1.5)):
    """Detector that 'finds' one face at a fixed stride-32 cell of the 640 canvas."""
    extra = np.full((1, 2, 20, 20), -30.0, np.float32)
    extra[0, 0, cell_xy[1], cell_xy[0]] = 30.0
    zeros = {s: np.zeros((2, 3)) for s in STRIDES}
    return scrfd_graph(path, zeros, {8: [-30, -30], 16: [-30, -30], 32: [0, 0]},
                       {s: np.zeros((8, 3)) for s in STRIDES}, {s: list(box) * 2 for s in STRIDES},
                       {s: np.zeros((20, 3)) for s in STRIDES}, {s: list(kps_off) * 2 for s in STRIDES}, extra32=extra)


def test_prepare_face_identity(tmp_path, fixtures_dir, offline_landmarks):
    pytest.importorskip("mediapipe")
    models = tmp_path / "face_analysis" / "models"
    models.mkdir(parents=True)
    _located_detector(models / "scrfd_10g_bnkps.onnx", (9, 8))
    _, w, b = arcface_graph(models / "glintr100.onnx", seed=5)
    for unused in ("1k3d68.onnx", "2d106det.onnx", "genderage.onnx"):
        (models / unused).write_bytes(b"not an onnx file: loading it would fail")
    img = Image.open(fixtures_dir / "portrait_6.jpg").convert("RGB")
    rgb = np.asarray(img)
    d = prepare_face(img, tmp_path / "face_analysis", use_cache=False)
    scale = 640 / 624  # letterbox of the 624x624 portrait
    off = np.array([-1, -0.5, 1, -0.5, 0, 0.3, -0.8, 1.5, 0.8, 1.5]).reshape(5, 2) * 32
    kps = ((np.array([9 * 32, 8 * 32]) + off) / scale).astype(np.float32)
    crop = cv2.warpAffine(rgb, alignment_matrix(kps), (112, 112), borderValue=0.0)
    np.testing.assert_allclose(d.face_emb.numpy(), arcface_reference(crop, w, b), atol=2e-3)
    assert np.abs(d.face_emb.numpy()).sum() > 1
    # a detector that sees nothing: clear error by default, zero embedding on request
    none = tmp_path / "none"
    none.mkdir()
    scrfd_graph(none / "scrfd_10g_bnkps.onnx", {s: np.zeros((2, 3)) for s in STRIDES}, {s: [-9, -9] for s in STRIDES},
                {s: np.zeros((8, 3)) for s in STRIDES}, {s: [1] * 8 for s in STRIDES},
                {s: np.zeros((20, 3)) for s in STRIDES}, {s: [0] * 20 for s in STRIDES})
    arcface_graph(none / "glintr100.onnx")
    with pytest.raises(NoFaceError, match="face detector"):
        prepare_face(img, none, use_cache=False)
    fb = prepare_face(img, none, no_face="fallback", use_cache=False)
    assert torch.equal(fb.face_emb, torch.zeros(512)) and any("zero identity" in n for n in fb.notes)
    # masks do not depend on the identity models
    assert all(torch.equal(x, y) for x, y in zip(fb.face_masks, d.face_masks))


def test_missing_models_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="scrfd_10g_bnkps.onnx.*huggingface.co/fudan-generative-ai/hallo"):
        SCRFD(str(tmp_path / "scrfd_10g_bnkps.onnx"))
    with pytest.raises(FileNotFoundError, match="glintr100.onnx"):
        ArcFace(str(tmp_path / "glintr100.onnx"))
    with pytest.raises(LandmarkerUnavailableError, match="face_landmarker_v2_with_blendshapes.task.*pretrained_models"):
        get_landmarker(str(tmp_path / "face_landmarker_v2_with_blendshapes.task"), backend="tasks")


def test_gpu_is_opt_in():
    import onnxruntime as ort

    assert resolve_providers(None) == ("CPUExecutionProvider",)
    got = resolve_providers(["CUDAExecutionProvider"])
    assert got[-1] == "CPUExecutionProvider"
    assert ("CUDAExecutionProvider" in got) == ("CUDAExecutionProvider" in ort.get_available_providers())
