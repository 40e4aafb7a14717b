"""``hallo generate --speaker``: two fixture portraits side by side on a wider background, two different
cuts of the fixture speech, tiny random-weight models.

The photo is ``tests/comfy_server.two_people`` (the ComfyUI test's). The tiny SCRFD reports the two
faces where the portraits are (``build_models_dir(faces=...)``); the
landmarks are mediapipe's, from the legacy FaceMesh or, on mediapipe 1.x, a .task bundle of real
mediapipe models (tests/landmarks_env.py; needs HALLO_MEDIAPIPE_LEGACY_WHEEL, as .ci/run sets it).

One full-frame mp4 at the photo's aspect with audio as long as the longer track; the photo outside
every crop; each face's clips equal to a one-face run of that face with its (padded) track, whole
clips before encoding; a stereo file split by #0/#1 gives the video of the two mono files; an
interrupted --hallo2 run, resumed, gives the frames of an uninterrupted one; every bad input is one
line, exit 2, before any weights are read.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.comfy_server import TWO_PEOPLE_SIZE, two_people, two_people_scrfd_faces

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("HALLO_SHARED", REPO.parent / "shared")) / "fixtures"
W, H = TWO_PEOPLE_SIZE
STEPS = 1
TRACE = "HALLO_TRACE_LOADS"


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    import soundfile as sf

    from tests.support import cli_runner
    from tests.support.models_mirror import tiny_models

    if not FIXTURES.is_dir():
        pytest.skip(f"real fixtures not found at {FIXTURES} (../shared is absent)")
    if not cli_runner.available():
        pytest.skip("the warm CLI runner needs os.fork")
    pytest.importorskip("mediapipe")
    from tests.landmarks_env import offline_landmarks_skip_reason, write_tasks_bundle

    root = tmp_path_factory.mktemp("cli_speakers")
    models = tiny_models(root / "models", faces=two_people_scrfd_faces())
    if offline_landmarks_skip_reason():  # no legacy FaceMesh here: the Tasks path on a real-model bundle
        from hallo_core.face.landmarks import TASK_FILENAME

        if not write_tasks_bundle(models / "face_analysis" / "models" / TASK_FILENAME):
            pytest.skip(offline_landmarks_skip_reason())
    photo = two_people(FIXTURES)
    Image.fromarray(photo).save(root / "pair.png")
    wave, sr = sf.read(str(FIXTURES / "speech_1.wav"), dtype="float32")
    mono = wave.mean(axis=1, dtype=np.float32) if wave.ndim == 2 else wave
    a = mono[: int(0.8 * sr)]  # 20 frames: two clips
    b = mono[int(1.0 * sr): int(1.5 * sr)]  # another cut, shorter: padded with silence
    sf.write(str(root / "alice.wav"), a, sr, subtype="FLOAT")
    sf.write(str(root / "bob.wav"), b, sr, subtype="FLOAT")
    sf.write(str(root / "bob_padded.wav"), np.concatenate([b, np.zeros(len(a) - len(b), np.float32)]), sr,
             subtype="FLOAT")
    st = np.stack([a, np.concatenate([b, np.zeros(len(a) - len(b), np.float32)])], axis=1)
    sf.write(str(root / "interview.wav"), st, sr, subtype="FLOAT")
    sf.write(str(root / "quiet.wav"), np.zeros(len(b), np.float32), sr, subtype="FLOAT")
    env = dict(os.environ)
    env.pop(TRACE, None)
    (root / "logs").mkdir()
    warm = cli_runner.WarmCli(env=env, log_dir=root / "logs")
    yield {"root": root, "models": models, "photo": photo, "a": a, "b": b, "sr": sr, "warm": warm}
    warm.close()


def _args(base, out: Path, *speakers: str, extra=()) -> list:
    root = base["root"]
    sp = []
    for s in speakers:
        sp += ["--speaker", s.format(root=root)]
    return ["generate", "--models", str(base["models"]), "--image", str(root / "pair.png"), *sp, "--out", str(out),
            "--size", "64", "--steps", str(STEPS), "--device", "cpu", "--hallo2", "--no-separator", *extra]


MONO = ("0={root}/alice.wav", "1={root}/bob.wav")


def _frames(path: Path) -> np.ndarray:
    from hallo_core.media.video import read_video

    return read_video(path)[0].numpy()


@pytest.fixture(scope="module")
def talk(base):
    """The two-speaker --hallo2 run of the two mono files."""
    out = base["root"] / "talk.mp4"
    log = base["root"] / "talk.trace"
    r = base["warm"].run(_args(base, out, *MONO), cwd=base["root"], env={TRACE: str(log)})
    assert r.returncode == 0, r.stderr[-3000:]
    r.reads = log.read_text().splitlines()
    return out, r


def test_the_weights_are_read_once_for_both_speakers(talk):
    reads = [x for x in talk[1].reads if " face model " not in x]
    assert len(reads) == len(set(reads)), reads
    assert sum("hallo2/net.pth" in x for x in reads) == 1 and sum("sd-vae-ft-mse" in x for x in reads) == 1, reads
    assert sum("wav2vec" in x for x in reads) == 1, reads


def test_two_speakers_give_one_full_frame_video_as_long_as_the_longer_track(base, talk):
    import json

    from hallo_core.media.video import read_video

    out, r = talk
    frames, fps, audio_s = read_video(out)
    assert frames.shape == (20, H, W, 3) and fps == 25  # the photo's size and aspect; 0.8 s at 25 fps
    assert audio_s is not None and abs(audio_s - 0.8) < 0.06  # the longer track's length (AAC rounds up a frame)
    assert "2 speakers, one face's sampling each" in r.stdout and "read once" in r.stdout
    assert "speaker 2/2: face 1 (bob.wav)" in r.stderr  # the progress names the speaker
    meta = json.loads(out.with_name(out.name + ".framing.json").read_text())
    assert meta["mode"] == "speakers" and meta["output_size"] == [W, H] and len(meta["faces"]) == 2
    assert [s["face"] for s in meta["speakers"]] == [0, 1] and not Path(str(out) + ".resume.pt").exists()
    # outside every crop: the photo, up to H.264
    src = base["photo"].astype(int)
    outside = np.ones((H, W), bool)
    for s in meta["speakers"]:
        x0, y0, x1, y1 = s["crop_box"]
        outside[max(y0 - 4, 0):y1 + 4, max(x0 - 4, 0):x1 + 4] = False  # yuv420 chroma reaches across the edge
    err = np.abs(frames.numpy().astype(int) - src[None])[:, outside]
    assert outside.sum() > 0.2 * W * H and err.max() <= 12 and err.mean() < 2.0, (err.max(), err.mean())
    for s in meta["speakers"]:  # inside each face region: that speaker's generated face, not the photo
        x0, y0, x1, y1 = s["face_region"]
        assert np.abs(frames.numpy()[:, y0:y1, x0:x1].astype(int) - src[None, y0:y1, x0:x1]).mean() > 10


def test_the_soundtrack_is_the_mix_of_both_tracks(base, talk):
    from hallo_core.audio.loading import load_audio_file

    wave, sr = load_audio_file(talk[0])
    assert sr == base["sr"] and wave.shape[0] == 1
    a, b = base["a"], base["b"]
    mix = a.copy()
    mix[: len(b)] += b
    mix /= max(1.0, float(np.abs(mix).max()))
    n = min(len(mix), wave.shape[1]) - 4096
    # AAC delays and smooths; line both up by cross-correlation, then compare shapes
    lag = int(np.argmax(np.correlate(wave[0, :8192], mix[:4096], "valid")))
    got = wave[0, lag:lag + n]
    corr = float(np.corrcoef(got, mix[:n])[0, 1])
    assert corr > 0.9, corr
    only_a = float(np.corrcoef(got[: len(b) - 4096], a[: len(b) - 4096])[0, 1])
    assert only_a < corr - 0.05  # both voices are in it, not only the first


def test_each_face_is_its_one_face_run_exactly(base, talk, tmp_path):
    """In process: the speakers' clips (before encoding) equal one-face runs of each face (--frame square
    on its padded track, same seed), and the CLI's video is this run's."""
    from hallo_core.job import GenerateJob, Session
    from hallo_core.pipeline.generate import GenerationSettings
    from hallo_core.speakers import SpeakersJob, parse_speaker, prepare_tracks, run_speakers

    root = base["root"]
    settings = GenerationSettings(steps=STEPS, mask_rate=0.25)  # the CLI's --hallo2 default
    specs = [parse_speaker(s.format(root=root)) for s in MONO]
    job = SpeakersJob(root / "pair.png", specs, tmp_path / "multi.mp4", settings, hallo2=True, size=64,
                      separator=False)
    clips = {0: [], 1: []}
    with Session(base["models"], device="cpu") as s:
        framed = job.frame(s.models.require("face_analysis").parent)
        result = run_speakers(s, job, framed, prepare_tracks(specs),
                              progress=lambda i, k, n, st, ns, fr: fr is not None and clips[i].append(fr.clone()))
        assert result.complete and len(result.sampling_seconds) == 2
        for i, track in ((0, root / "alice.wav"), (1, root / "bob_padded.wav")):
            alone = []
            one = GenerateJob(root / "pair.png", track, tmp_path / f"one{i}.mp4", settings, hallo2=True, size=64,
                              face=i, frame="crop", separator=False)
            s.run(one, progress=lambda k, n, st, ns, fr: fr is not None and alone.append(fr.clone()))
            assert len(alone) == len(clips[i]) == 2
            for x, y in zip(alone, clips[i]):
                assert torch.equal(x, y), f"face {i}"
    assert np.array_equal(_frames(tmp_path / "multi.mp4"), _frames(talk[0]))


def test_a_stereo_file_split_by_channel_gives_the_video_of_the_two_files(base, talk):
    out = base["root"] / "interview.mp4"
    r = base["warm"].run(_args(base, out, "0={root}/interview.wav#0", "1={root}/interview.wav#1"), cwd=base["root"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "face 1 (interview.wav#1)" in r.stdout
    assert np.array_equal(_frames(out), _frames(talk[0]))


def test_an_interrupted_hallo2_run_resumes_into_the_uninterrupted_frames(base, talk):
    out = base["root"] / "resumed.mp4"
    warm = base["warm"]
    args = _args(base, out, *MONO)
    first_clip = r"\| %d/\d+ \[" % (2 * STEPS)  # clip 1 of both speakers sampled
    r = warm.signal_when(args, base["root"], first_clip, signal.SIGINT, timeout=600)
    assert r.returncode == 130, r.stderr[-3000:]
    assert "continue with:" in r.stderr and "--resume" in r.stderr
    ckpt = Path(str(out) + ".resume.pt")
    assert ckpt.is_file() and 0 < len(_frames(out)) < 20
    kept = (out.read_bytes(), ckpt.read_bytes())
    # the voices swapped: another job, refused before the partial file is touched
    r = warm.run(_args(base, out, "0={root}/bob.wav", "1={root}/alice.wav", extra=["--resume"]), cwd=base["root"])
    assert r.returncode == 2 and "written for other speakers, inputs or settings" in r.stderr, r.stderr[-3000:]
    assert (out.read_bytes(), ckpt.read_bytes()) == kept
    r = warm.run(args + ["--resume"], cwd=base["root"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming" in r.stderr and not ckpt.exists()
    assert np.array_equal(_frames(out), _frames(talk[0]))


# -- bad input: one line, exit 2, before any weights ------------------------------------------------

def _bad(base, tmp_path, args, needle, stage="before", models=None):
    from tests.test_bad_inputs_cli import one_error_line, trace_lines

    log = tmp_path / "trace.log"
    if models is not None:
        args[args.index("--models") + 1] = str(models)
    r = base["warm"].run(args, cwd=tmp_path, env={TRACE: str(log)})
    assert r.returncode == 2, (r.returncode, r.stderr[-3000:])
    line = one_error_line(r.stderr, needle)
    read = trace_lines(log)
    if stage == "before":
        assert read == [], read
    else:  # finding the faces is the check: only the face models were read
        assert read and all(" face model " in x for x in read), read
    assert not (tmp_path / "out.mp4").exists()
    return r, line


CASES = [
    ("fewer-faces-than-speakers", ("0={root}/alice.wav", "1={root}/bob.wav", "2={root}/bob.wav"), (),
     "3 speakers were given but the photo shows 2 faces", "face"),
    ("same-face-twice", ("0={root}/alice.wav", "0={root}/bob.wav"), (),
     "face 0 is given to two speakers", "before"),
    ("face-index-absent", ("0={root}/alice.wav", "5={root}/bob.wav"), (),
     "face index 5 does not exist: 2 faces were found", "face"),
    ("channel-absent", ("0={root}/alice.wav#1", "1={root}/bob.wav"), (),
     "alice.wav has 1 channel (#0); there is no channel #1", "before"),
    ("channel-absent-stereo", ("0={root}/interview.wav#0", "1={root}/interview.wav#2"), (),
     "has 2 channels (#0 to #1); there is no channel #2", "before"),
    ("speaker-with-audio", MONO, ("--audio", "{root}/alice.wav"), "--speaker and --audio cannot be combined", "before"),
    ("one-speaker", ("0={root}/alice.wav",), (), "1 speaker given; a conversation needs at least 2", "before"),
    ("speaker-with-face", MONO, ("--face", "1"), "each --speaker names its own face", "before"),
    ("speaker-with-frame", MONO, ("--frame", "square"), "--speaker pastes every face back", "before"),
    ("malformed", ("alice.wav", "1={root}/bob.wav"), (), "a speaker is FACE=AUDIO[#CHANNEL]", "before"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_speakers_are_one_line_before_any_weights(base, tmp_path, case):
    _, speakers, extra, needle, stage = case
    extra = [e.format(root=base["root"]) for e in extra]
    _bad(base, tmp_path, _args(base, tmp_path / "out.mp4", *speakers, extra=extra), needle, stage)


def test_overlapping_faces_are_refused_before_any_weights(base, tmp_path):
    """The detector reports two faces on the left portrait: both crops hold the one real face, so the
    two face regions overlap and no paste order keeps both whole."""
    from tests.support.models_folder import _scrfd_constant
    from tests.support.models_mirror import mirror, replace

    models = mirror(base["models"], tmp_path / "models")
    onnx_path = tmp_path / "scrfd.onnx"
    _scrfd_constant(onnx_path, faces=two_people_scrfd_faces([(185, 158, 405, 378), (300, 158, 520, 378)]))
    replace(models / "face_analysis" / "models" / "scrfd_10g_bnkps.onnx", onnx_path.read_bytes())
    _bad(base, tmp_path, _args(base, tmp_path / "out.mp4", *MONO), "faces 0 and 1 are too close together", "face",
         models=models)


def test_a_silent_speaker_is_a_warning_not_a_refusal(base, tmp_path):
    """A silent track is named in a warning and the run goes on to its next check (here: a missing network,
    so that nothing is rendered)."""
    from tests.support.models_mirror import mirror

    models = mirror(base["models"], tmp_path / "models")
    (models / "hallo2" / "net.pth").unlink()
    r, line = _bad(base, tmp_path, _args(base, tmp_path / "out.mp4", "0={root}/alice.wav", "1={root}/quiet.wav"),
                   "hallo2/net.pth", "before", models=models)
    warnings = [x for x in r.stderr.splitlines() if x.startswith("warning:")]
    assert any("speaker face 1 (quiet.wav) is silent from start to end" in w and "as a listener" in w
               for w in warnings), r.stderr[-2000:]
