"""``hallo generate`` on any photo, as a subprocess: crop, paste back, choose the face, keep the
faithful path, refuse bad images before any model loads. Each run is a child forked from a warm interpreter
(tests/support/cli_runner.py: the same ``python -m hallo_core`` without seconds of imports per run).

Tiny random models in the official layout; the faces are found by mediapipe's real BlazeFace
(``--detector mediapipe``: the tiny folder's SCRFD is a constant graph that always reports one
face in the middle) and landmarked by mediapipe's real FaceMesh, on the real fixture portraits.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("HALLO_SHARED", REPO.parent / "shared")) / "fixtures"
SECONDS = 0.8  # 20 frames: two clips


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _cli(inp, *args: str, env: dict = None):
    return inp["warm"].run(list(args), REPO, env=env)


def _portrait(n: int, side: int) -> np.ndarray:
    p = np.asarray(Image.open(FIXTURES / f"portrait_{n}.jpg").convert("RGB"))
    return cv2.resize(p, (side, side), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def inp(tmp_path_factory):
    import soundfile as sf

    from tests.support import cli_runner
    from tests.support.models_mirror import tiny_models

    if not FIXTURES.is_dir():
        pytest.skip(f"real fixtures not found at {FIXTURES} (../shared is absent)")
    if not cli_runner.available():
        pytest.skip("the warm CLI runner needs os.fork")
    mp = pytest.importorskip("mediapipe")
    if not hasattr(mp, "solutions"):  # these runs pick --detector mediapipe: the legacy BlazeFace solution
        pytest.skip(f"mediapipe {mp.__version__} has no bundled face_detection solution (legacy CI job runs these)")
    from tests.landmarks_env import offline_landmarks_skip_reason, write_tasks_bundle

    root = tmp_path_factory.mktemp("cli_full_frame")
    models = tiny_models(root / "models")
    if offline_landmarks_skip_reason():  # no legacy FaceMesh here: the Tasks path on a real-model bundle
        from hallo_core.face.landmarks import TASK_FILENAME

        if not write_tasks_bundle(models / "face_analysis" / "models" / TASK_FILENAME):
            pytest.skip(offline_landmarks_skip_reason())
    wave, sr = sf.read(str(FIXTURES / "speech_1.wav"), dtype="float32")
    sf.write(str(root / "short.wav"), wave[: int(SECONDS * sr)], sr)
    land = np.full((720, 1280, 3), (90, 110, 130), np.uint8)
    land[200:600, 760:1160] = _portrait(6, 400)  # off-centre, right
    Image.fromarray(land).save(root / "landscape.png")
    pair = np.concatenate([_portrait(2, 500), _portrait(6, 500)], 1)  # 1000 x 500, two faces
    Image.fromarray(pair).save(root / "pair.png")
    (root / "logs").mkdir()
    warm = cli_runner.WarmCli(env=_env(), log_dir=root / "logs")
    yield {"models": models, "wav": root / "short.wav", "root": root, "landscape": land, "warm": warm}
    warm.close()


def _gen_args(inp, image, out: Path, *extra: str) -> list:
    return ["generate", "--models", str(inp["models"]), "--image", str(image), "--audio", str(inp["wav"]),
            "--out", str(out), "--size", "64", "--steps", "2", "--device", "cpu", "--detector", "mediapipe", *extra]


def _gen(inp, image, out: Path, *extra: str):
    return _cli(inp, *_gen_args(inp, image, out, *extra))


def _frames(path: Path) -> np.ndarray:
    from hallo_core.media.video import read_video

    return read_video(path)[0].numpy()


def _sidecar(video: Path) -> dict:
    return json.loads(video.with_name(video.name + ".framing.json").read_text())


@pytest.fixture(scope="module")
def landscape_runs(inp):
    """The landscape photo, default framing (crop + paste back) and ``--frame crop``."""
    root, image = inp["root"], inp["root"] / "landscape.png"
    full, square = root / "land_full.mp4", root / "land_square.mp4"
    for out, extra in ((full, ()), (square, ("--frame", "crop"))):
        r = _gen(inp, image, out, *extra)
        assert r.returncode == 0, r.stderr[-3000:]
    return full, square


def test_landscape_photo_gives_a_full_frame_video_pasted_back(inp, landscape_runs):
    from hallo_core.pipeline.full_frame import paster_from_sidecar

    full, square = landscape_runs
    src = inp["landscape"].astype(int)
    meta = _sidecar(full)
    assert meta["mode"] == "paste" and meta["output_size"] == [1280, 720] and len(meta["faces"]) == 1
    x0, y0, x1, y1 = meta["crop_box"]
    assert x1 - x0 == y1 - y0 and 0 <= x0 and x1 <= 1280 and 0 <= y0 and y1 <= 720
    assert x0 < 960 < x1 and y0 < 400 < y1  # on the pasted portrait's face
    frames = _frames(full).astype(int)
    assert frames.shape == (20, 720, 1280, 3)
    outside = np.ones((720, 1280), bool)
    outside[y0 - 4:y1 + 4, x0 - 4:x1 + 4] = False  # yuv420 chroma reaches a pixel or two across the edge
    err = np.abs(frames - src[None])[:, outside]
    assert err.max() <= 4 and err.mean() < 2.0  # the source, up to H.264 at qp 20
    inner = np.abs(frames - src[None])[:, y0 + 50:y1 - 50, x0 + 50:x1 - 50].mean()
    assert inner > 10  # the animated crop, not the photo

    # The square run animated the same crop with the same seed: pasting its decoded frames
    # predicts the full-frame video. In the feathered band the output follows that blend, not the photo.
    sq = _frames(square)
    assert sq.shape == (20, 64, 64, 3) and _sidecar(square)["crop_box"] == meta["crop_box"]
    assert _sidecar(square)["mode"] == "crop"
    expected = paster_from_sidecar(square.with_name(square.name + ".framing.json")).paste(sq).astype(int)
    band = int(0.08 * (x1 - x0))
    ring = np.zeros((720, 1280), bool)
    ring[y0:y1, x0:x1] = True
    ring[y0 + band:y1 - band, x0 + band:x1 - band] = False
    to_blend = np.abs(frames - expected)[:, ring].mean()
    to_photo = np.abs(frames - src[None])[:, ring].mean()
    assert to_blend < to_photo / 2, (to_blend, to_photo)
    mid = np.abs(frames - src[None])[:, (y0 + y1) // 2, x0:x0 + band].mean(axis=(0, 2))
    assert mid[0] < mid[-1]  # fades in from the photo at the crop's edge


def test_resume_with_paste_back_and_other_geometry_refused(inp, landscape_runs):
    """A paste-back run interrupted after its first clip: a resume at another output size is
    refused without touching it; the same geometry resumes to the uninterrupted run's frames."""
    full, _ = landscape_runs
    assert not full.with_name(full.name + ".resume.pt").exists()  # a finished run leaves no checkpoint
    image = inp["root"] / "landscape.png"
    out = inp["root"] / "land_interrupted.mp4"
    ckpt = out.with_name(out.name + ".resume.pt")
    # the bar counts steps over all clips: step 2 of 4 ends the first clip (tests/support/cli_signals.py)
    r = inp["warm"].signal_when(_gen_args(inp, image, out), REPO, r"\| 2/4 \[", signal.SIGINT)
    assert r.returncode == 130 and ckpt.is_file(), r.stderr[-3000:]
    assert _frames(out).shape == (16, 720, 1280, 3)  # the pasted first clip plays
    before = out.read_bytes()
    r = _gen(inp, image, out, "--resume", "--max-side", "640")
    assert r.returncode == 2 and "resume checkpoint" in r.stderr
    assert out.read_bytes() == before and ckpt.is_file()
    r = _gen(inp, image, out, "--resume")
    assert r.returncode == 0, r.stderr[-3000:]
    assert not ckpt.exists()
    assert np.array_equal(_frames(out), _frames(full))  # same inputs and paste geometry: the same video


def test_stretch_gives_upstreams_squashed_square(inp):
    out = inp["root"] / "land_stretch.mp4"
    r = _gen(inp, inp["root"] / "landscape.png", out, "--frame", "stretch")
    assert r.returncode == 0, r.stderr[-3000:]
    assert _frames(out).shape == (20, 64, 64, 3)
    meta = _sidecar(out)
    assert meta["mode"] == "whole" and meta["crop_box"] is None


def test_face_1_takes_the_right_hand_portrait(inp):
    out = inp["root"] / "pair_right.mp4"
    r = _gen(inp, inp["root"] / "pair.png", out, "--face", "1", "--frame", "square")  # another name for crop
    assert r.returncode == 0, r.stderr[-3000:]
    meta = _sidecar(out)
    assert len(meta["faces"]) == 2 and meta["face_index"] == 1
    x0, _, x1, _ = meta["crop_box"]
    assert x0 >= 500 and x1 <= 1000  # the right half
    assert "2 faces found (mediapipe), animating face 1" in r.stderr and meta["mode"] == "crop"
    assert _frames(out).shape == (20, 64, 64, 3)


def test_bad_face_index_and_bad_images_fail_before_models_load(inp, tmp_path):
    (inp["root"] / "not_an_image.png").write_bytes(b"hello")
    blank = np.full((300, 400, 3), 200, np.uint8)
    Image.fromarray(blank).save(inp["root"] / "blank.png")
    cases = [("pair.png", ("--face", "5"), "face index 5 does not exist (--face): 2 faces were found"),
             ("not_an_image.png", (), "cannot be decoded"),
             ("blank.png", (), "almost blank")]
    for name, extra, words in cases:
        log = tmp_path / f"{name}.trace"
        r = _cli(inp, "generate", "--models", str(inp["models"]), "--image", str(inp["root"] / name), "--audio",
                 str(inp["wav"]), "--out", str(inp["root"] / "never.mp4"), "--size", "64", "--device", "cpu",
                 "--detector", "mediapipe", *extra, env={"HALLO_TRACE_LOADS": str(log)})
        last = r.stderr.strip().splitlines()[-1]
        assert r.returncode == 2 and last.startswith("error: ") and words in last, r.stderr[-2000:]
        assert "Traceback" not in r.stderr and "clips x steps" not in r.stderr
        # finding the face is the check itself; no generation model was read
        read = log.read_text().splitlines() if log.exists() else []
        assert all(" face model " in line for line in read), read
    assert not (inp["root"] / "never.mp4").exists()


def test_square_portrait_default_path_is_todays_whole_image_call(inp):
    """Faithful mode untouched: the face data is torch.equal to today's exact call (the whole
    picture, opened with PIL and converted to RGB), and the videos of the default path and of
    ``--frame stretch`` (that same whole-image call) decode to identical bytes."""
    from hallo_core.face import prepare_face
    from hallo_core.pipeline.full_frame import frame_input

    image = FIXTURES / "portrait_5.jpg"
    face_dir = inp["models"] / "face_analysis"
    framed = frame_input(image, face_dir, size=64, detector="mediapipe")
    assert framed.mode == "whole" and framed.paster is None and framed.resume_tag == ""
    with Image.open(image) as im:
        today = prepare_face(im.convert("RGB"), face_dir, size=64)
    a, b = framed.face, today
    for x, y in zip((a.pixels, a.face_region, a.face_emb, a.landmarks, *a.full_masks, *a.face_masks, *a.lip_masks),
                    (b.pixels, b.face_region, b.face_emb, b.landmarks, *b.full_masks, *b.face_masks, *b.lip_masks)):
        assert torch.equal(x, y)
    assert a.crop_box is None and b.crop_box is None

    default, stretch = inp["root"] / "p5_default.mp4", inp["root"] / "p5_stretch.mp4"
    for out, extra in ((default, ()), (stretch, ("--frame", "stretch"))):
        r = _gen(inp, image, out, *extra)
        assert r.returncode == 0, r.stderr[-3000:]
    fa, fb = _frames(default), _frames(stretch)
    assert fa.shape == (20, 64, 64, 3) and np.array_equal(fa, fb)
    assert _sidecar(default)["mode"] == "whole"


def test_upscale_paste_into_streams_restored_crops_into_the_photo(inp, landscape_runs):
    """``upscale --paste-into``'s engine path on the square crop video: the temporal upscaler
    (tiny random networks, Lanczos background) restores the crop at x2, and each frame is pasted
    into the photo at the crop's place, at the photo's aspect; the audio is copied."""
    from hallo_core.pipeline.full_frame import paster_from_sidecar
    from hallo_core.upscale.file_upscale import UpscalerModels, upscale_video
    from tests.support.tiny_upscaler import flat_frame, textured_frame, tiny_codeformer, tiny_detector, tiny_parser

    _, square = landscape_runs
    sidecar = square.with_name(square.name + ".framing.json")
    paster = paster_from_sidecar(sidecar, max_side=640)
    assert paster.size == (640, 360)
    models = UpscalerModels(tiny_codeformer(), tiny_detector(textured_frame(seed=0), flat_frame()), tiny_parser(),
                            None)
    out = inp["root"] / "land_upscaled.mp4"
    report = upscale_video(square, out, models, scale=2, paster=paster)
    assert report.frames == 20
    from hallo_core.media.video import read_video

    frames, fps, audio_s = read_video(out)
    assert frames.shape == (20, 360, 640, 3) and fps == 25 and abs(audio_s - SECONDS) < 0.05
    x0, y0, x1, y1 = paster.rect
    keep = np.ones((360, 640), bool)
    keep[max(y0 - 4, 0):y1 + 4, max(x0 - 4, 0):x1 + 4] = False
    err = np.abs(frames.numpy().astype(int) - paster.background[None].astype(int))[:, keep]
    # the photo up to H.264 at the pack's one quality (qp 20)
    assert err.max() <= 8 and err.mean() < 4.0
    inner = np.abs(frames.numpy().astype(int) - paster.background[None].astype(int))[:, y0 + 20:y1 - 20,
                                                                                      x0 + 20:x1 - 20]
    assert inner.mean() > 10

    whole = inp["root"] / "whole.framing.json"
    whole.write_text(json.dumps({"mode": "whole", "crop_box": None, "source": str(sidecar)}))
    with pytest.raises(ValueError, match="no crop to paste back"):
        paster_from_sidecar(whole)
    with pytest.raises(ValueError, match="the crop was made for 1280x720"):
        paster_from_sidecar(sidecar, FIXTURES / "portrait_5.jpg")
