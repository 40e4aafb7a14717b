"""Bad input through the CLI as subprocesses: every class of issue 14, with tiny models and the
real fixture portrait and speech.

Each row runs ``python -m hallo_core ...`` in its own process and asserts the exit code, one
``error:`` line (the last thing printed) with no "Traceback", that no input file changed
(hashes before and after), that nothing was left behind except where a mode promises a
playable partial file, and, for the checks made up front, that no weights were read before
the failure (the ``HALLO_TRACE_LOADS`` log: empty, or only the face models where finding the
face is the check). The generate rows of tests/test_bad_inputs.py run here again, through the
CLI, next to the rows only the CLI has.

Every row runs in a child forked from a warm interpreter (tests/support/cli_runner.py: a cold
start costs 4-14 s of imports here); ``test_a_cold_start_gives_the_same_answers`` runs some
of them through a cold ``python -m hallo_core`` too, and tests/test_cli_e2e.py interrupts a
cold one with Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable, List, NamedTuple, Optional

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.support import cli_runner
from tests.support.models_mirror import mirror, replace
from tests.test_bad_inputs import CASES as PREFLIGHT_CASES
from tests.test_bad_inputs import OPTIONS, _digest, _Evil, _file, _remove, _saved, _set, _tree_digest, _wav, argv

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("HALLO_SHARED", REPO.parent / "shared")) / "fixtures"
TRACE = "HALLO_TRACE_LOADS"


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop(TRACE, None)
    return env


def _tiny_models(root: Path) -> bool:
    """The tiny models folder of one Hallo network (the CLI needs no hallo2 here); True when it
    also holds a landmarker bundle of real mediapipe models (a face can then be found)."""
    from tests.landmarks_env import offline_landmarks_skip_reason, write_tasks_bundle
    from tests.support.models_folder import write_tiny_face_models, write_tiny_hallo, write_tiny_vae, write_tiny_wav2vec

    write_tiny_hallo(root, versions=("hallo",))
    write_tiny_vae(root)
    write_tiny_wav2vec(root)
    write_tiny_face_models(root)
    if offline_landmarks_skip_reason() is None:
        return True
    from hallo_core.face.landmarks import TASK_FILENAME

    return write_tasks_bundle(root / "face_analysis" / "models" / TASK_FILENAME)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    if not FIXTURES.is_dir():
        pytest.skip(f"real fixtures not found at {FIXTURES} (../shared is absent)")
    if not cli_runner.available():
        pytest.skip("the warm CLI runner needs os.fork")
    root = tmp_path_factory.mktemp("bad_inputs_cli")
    torch.manual_seed(0)
    faces = _tiny_models(root / "models")
    wave, sr = sf.read(str(FIXTURES / "speech_1.wav"), dtype="float32")
    sf.write(str(root / "short.wav"), wave[: int(0.8 * sr)], sr)  # 20 frames: two clips
    (root / "logs").mkdir()
    warm = cli_runner.WarmCli(env=_env(), log_dir=root / "logs")
    yield {"root": root, "models": root / "models", "faces": faces, "speech": (wave, sr), "warm": warm}
    warm.close()


@pytest.fixture
def job(base, tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    image = inputs / "portrait.jpg"
    image.write_bytes((FIXTURES / "portrait_5.jpg").read_bytes())
    audio = inputs / "speech.wav"
    audio.write_bytes((base["root"] / "short.wav").read_bytes())
    return {"models": mirror(base["models"], tmp_path / "models"), "image": image, "audio": audio,
            "out": tmp_path / "out" / "video.mp4", "device": "cpu", "options": dict(OPTIONS), "dir": tmp_path,
            "extra": [], "base": base}


# -- what every row asserts ----------------------------------------------------------------------

def _listing(root: Path) -> set:
    """Every path under ``root``, links not followed (the models mirror is links)."""
    out = set()
    for d, dirs, files in os.walk(root):
        out.update(str(Path(d) / n) for n in dirs + files)
    return out


def _snapshot(job: dict, watched: List[Path]) -> dict:
    return {"files": _listing(job["dir"]), "inputs": {str(p): _digest(p) for p in watched},
            "models": _tree_digest(job["models"]) if Path(job["models"]).is_dir() else None}


def one_error_line(stderr: str, needle: str) -> str:
    assert "Traceback" not in stderr, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr[-3000:]
    assert needle in errors[0], errors[0]
    assert errors[0] == stderr.strip().splitlines()[-1]  # the last word, not buried in output
    assert len(errors[0]) < 1200
    return errors[0]


def trace_lines(log: Path) -> List[str]:
    return log.read_text().splitlines() if log.exists() else []


def run_bad(job: dict, args: List[str], needle: str, stage: str = "before", watched: Optional[List[Path]] = None,
            rc: int = 2):
    """Run one bad command and assert what every row promises; returns (result, error line)."""
    log = job["dir"].parent / f"{job['dir'].name}.trace"  # outside the job folder: not a leftover
    watched = [Path(p) for p in (watched if watched is not None else [job["image"], job["audio"]])]
    watched += [Path(job["out"])] if Path(job["out"]).is_file() else []
    before = _snapshot(job, watched)
    r = job["base"]["warm"].run(args, cwd=job["dir"], env={TRACE: str(log)})
    assert r.returncode == rc, (r.returncode, r.stderr[-3000:])
    line = one_error_line(r.stderr, needle)
    after = _snapshot(job, watched)
    assert after["inputs"] == before["inputs"]  # no input changed
    assert after["models"] == before["models"]
    assert after["files"] == before["files"], sorted(after["files"] ^ before["files"])  # nothing left behind
    assert not (job["dir"] / "pwned_by_bad_inputs_test").exists()
    read = trace_lines(log)
    if stage == "before":  # failed before any weights were read
        assert read == [], read
    elif stage == "face":  # finding the face is this check: nothing else was read
        assert read and all(" face model " in x for x in read), read
    return r, line


def gen_argv(job: dict) -> List[str]:
    return argv(job) + list(job["extra"])


# -- the preflight table of tests/test_bad_inputs.py, through the CLI --------------------------------

@pytest.mark.parametrize("case", PREFLIGHT_CASES, ids=[c.id for c in PREFLIGHT_CASES])
def test_preflight_table_through_the_cli(case, job):
    case.setup(job)
    run_bad(job, gen_argv(job), case.needle)


# -- rows only the CLI has --------------------------------------------------------------------------

class Row(NamedTuple):
    id: str
    klass: str
    setup: Callable[[dict], None]
    needle: str
    stage: str = "before"  # before | face | after (no claim on reads)
    needs_faces: bool = False


def _extra(*args):
    def f(job):
        job["extra"] += list(args)
    return f


def _interrupted_run_at_out(job):
    out = Path(job["out"])
    out.parent.mkdir(parents=True)
    out.write_bytes(b"the partial video of an interrupted run")
    out.with_name(out.name + ".resume.pt").write_bytes(b"its checkpoint")
    job["watch_extra"] = [out.with_name(out.name + ".resume.pt")]


def _image_named_like_sidecar(job):
    p = Path(str(job["out"]) + ".framing.json")
    p.parent.mkdir(parents=True)
    p.write_bytes(job["image"].read_bytes())
    job["image"] = p


def _picture(kind: str):
    def make(p):
        from PIL import Image

        if kind == "blank":
            Image.new("RGB", (400, 300), (200, 200, 200)).save(p)
        else:  # a smooth colour field: no face anywhere (the tiny detector reports one anyway)
            y, x = np.mgrid[0:300, 0:400]
            Image.fromarray(np.stack([x * 255 // 400, y * 255 // 300, (x + y) * 255 // 700], -1).astype(np.uint8)).save(p)
    return _file("image", f"{kind}.png", make=make)


def _several_missing(job):
    _remove("hallo/net.pth")(job)
    _remove("sd-vae-ft-mse")(job)


CLI_ROWS: List[Row] = [
    # output safety (the library's cases are in the table above)
    Row("out-holds-an-interrupted-run", "output", _interrupted_run_at_out, "holds an interrupted run"),
    Row("image-is-a-side-file-of-out", "output", _image_named_like_sidecar, "a file generate writes next to --out"),
    # the picture: decodes, and holds a face the CLI can animate
    Row("image-blank", "image", _picture("blank"), "almost blank"),
    Row("face-index-absent", "image", _extra("--face", "3"), "(--face)", stage="face"),
    Row("no-face", "image", _picture("gradient"), "or use --no-face fallback", stage="face", needs_faces=True),
    # nonsense values
    Row("steps-nan", "options", _set(steps=float("nan")), "--steps is nan, not a finite number"),
    Row("steps-not-a-number", "options", _set(steps="abc"), "'abc' is not a number"),
    Row("steps-fraction", "options", _set(steps=2.5), "--steps is 2.5, not a whole number"),
    Row("margin-negative", "options", _extra("--margin", "-1"), "--margin is -1"),
    Row("max-side-zero", "options", _extra("--max-side", "0"), "--max-side is 0"),
    Row("face-negative", "options", _extra("--face", "-2"), "--face is -2"),
    Row("missing-argument", "options", lambda j: j.update(audio=None), "no audio given (--audio)"),
    # the soundtrack: AAC takes only its own rates (checked before the first clip, not after it)
    Row("audio-rate-not-aac", "audio", _file("audio", "odd_rate.wav", make=_wav(np.sin(np.arange(25000)) * 0.3, 25000)),
        "25000 Hz, cannot be carried by the mp4's AAC soundtrack"),
    # model files
    Row("several-models-missing", "models", _several_missing, "missing hallo (hallo/net.pth), vae (sd-vae-ft-mse)"),
    Row("net-legacy-unsafe-pickle", "models",
        lambda j: replace(j["models"] / "hallo" / "net.pth", _saved({"x": _Evil()})), "was refused"),
]


@pytest.mark.parametrize("row", CLI_ROWS, ids=[r.id for r in CLI_ROWS])
def test_cli_rows(row, job):
    if row.needs_faces and not job["base"]["faces"]:
        pytest.skip("no offline face landmarker here (tests/landmarks_env.py)")
    row.setup(job)
    a = gen_argv(job)
    if job["audio"] is None:
        i = a.index("--audio")
        del a[i:i + 2]
    run_bad(job, a, row.needle, row.stage, watched=[p for p in (job["image"], job["audio"]) if p is not None]
            + job.get("watch_extra", []))


def test_the_tables_cover_every_class():
    classes = {c.klass for c in PREFLIGHT_CASES} | {r.klass for r in CLI_ROWS}
    assert classes == {"output", "image", "audio", "models", "options", "device"}
    assert len(PREFLIGHT_CASES) + len(CLI_ROWS) >= 30


# -- upscale and convert: checked before any weights; outputs replaced only when complete ----------

def _video(path: Path) -> Path:
    from fractions import Fraction

    from hallo_core.media.video import write_video

    rng = np.random.default_rng(0)
    write_video(path, (rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(4)), Fraction(25))
    return path


def _up(job, **kw):
    a = ["upscale", "-i", str(kw.get("input", job["video"])), "-o", str(kw.get("output", job["out"])),
         "--models", str(kw.get("models", job["models"])), "--device", "cpu"]
    return a + list(kw.get("extra", ()))


UPSCALE_ROWS = [
    ("input-missing", lambda j: _up(j, input=j["dir"] / "nope.mp4"), "input video"),
    ("output-is-input", lambda j: _up(j, output=j["video"]), "is the --input file"),
    ("input-not-a-video", lambda j: _up(j, input=replace(j["dir"] / "inputs" / "junk.mp4", b"\0" * 500)),
     "cannot be decoded"),
    ("qp-99", lambda j: _up(j, extra=["--qp", "99"]), "--qp is 99"),
    ("fidelity-nan", lambda j: _up(j, extra=["-w", "nan"]), "--fidelity-weight is nan"),
    ("scale-3", lambda j: _up(j, extra=["-s", "3"]), "invalid choice"),
    ("models-missing", lambda j: _up(j), "missing hallo2_sr"),
    ("device-banana", lambda j: _up(j, extra=["--device", "banana"]), "not a device name"),
]


@pytest.mark.parametrize("name,args,needle", UPSCALE_ROWS, ids=[r[0] for r in UPSCALE_ROWS])
def test_upscale_rows(name, args, needle, job):
    job["video"] = _video(job["dir"] / "inputs" / "clip.mp4")
    run_bad(job, args(job), needle, watched=[job["video"], job["image"]])


def _net_file(job) -> Path:
    return Path(os.path.realpath(job["models"] / "hallo" / "net.pth"))


CONVERT_ROWS = [
    ("src-missing", lambda j: ["convert", str(j["dir"] / "nope.pth"), str(j["out"])], "does not exist"),
    ("dst-is-src", lambda j: ["convert", str(j["src"]), str(j["src"])], "is the src file"),
    ("src-unsafe-pickle", lambda j: ["convert", str(j["evil"]), str(j["out"].with_suffix(".safetensors"))],
     "was refused"),
    ("dst-not-safetensors", lambda j: ["convert", str(j["src"]), str(j["out"])], "name it video.safetensors"),
    ("src-truncated-over-existing-dst", lambda j: ["convert", str(j["cut"]), str(j["dst"])], "truncated or corrupt"),
]


@pytest.mark.parametrize("name,args,needle", CONVERT_ROWS, ids=[r[0] for r in CONVERT_ROWS])
def test_convert_rows(name, args, needle, job):
    inputs = job["dir"] / "inputs"
    job["src"] = inputs / "net.pth"
    job["src"].symlink_to(_net_file(job))
    job["evil"] = replace(inputs / "evil.pth", _saved({"x": _Evil()}))
    with open(_net_file(job), "rb") as f:
        job["cut"] = replace(inputs / "cut.pth", f.read(4096))
    job["dst"] = replace(inputs / "old.safetensors", b"the user's earlier conversion")
    watched = [job["evil"], job["cut"], job["dst"]] + ([job["src"]] if name == "dst-is-src" else [])
    run_bad(job, args(job), needle, watched=watched)


def test_convert_replaces_an_existing_file_only_when_complete(job):
    from safetensors.torch import load_file

    src = job["dir"] / "inputs" / "net.pth"
    torch.save({"a.weight": torch.randn(8, 8), "b.bias": torch.randn(8)}, src)
    dst = replace(job["dir"] / "inputs" / "net.safetensors", b"the user's earlier conversion")
    r = job["base"]["warm"].run(["convert", str(src), str(dst)], cwd=job["dir"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert set(load_file(str(dst))) == {"a.weight", "b.bias"}  # replaced, and no temporary file left
    assert sorted(p.name for p in dst.parent.iterdir()) == ["net.pth", "net.safetensors", "portrait.jpg", "speech.wav"]


# -- download: a network failure is one line, and no empty folder is left -------------------------

@pytest.mark.parametrize("how", ["offline", "no-connection"])
def test_download_failure_is_one_line_naming_what_to_place_by_hand(how, tmp_path):
    models = tmp_path / "new" / "models"
    env = dict(_env(), HF_HOME=str(tmp_path / "hf"), HF_HUB_DISABLE_TELEMETRY="1")
    if how == "offline":
        env["HF_HUB_OFFLINE"] = "1"
    else:  # a port nothing listens on: the connection is refused at once
        env.update(HF_HUB_OFFLINE="0", HF_ENDPOINT="http://127.0.0.1:9", HF_HUB_ETAG_TIMEOUT="2",
                   HF_HUB_DOWNLOAD_TIMEOUT="2")
    r = subprocess.run([sys.executable, "-m", "hallo_core", "download", "--models", str(models), "--which", "vae"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr[-3000:]
    line = one_error_line(r.stderr, "download failed: ")
    assert "https://huggingface.co/fudan-generative-ai/hallo: sd-vae-ft-mse/config.json" in line
    assert f"place each at {models}/<its path in the repo>" in line
    assert not (tmp_path / "new").exists()  # the folders it made are gone again


# -- the warm runner is the CLI: a cold `python -m hallo_core` answers the same ---------------------

COLD = ("steps-negative", "out-symlink-to-audio", "net-unsafe-pickle")


@pytest.mark.parametrize("case", [c for c in PREFLIGHT_CASES if c.id in COLD], ids=COLD)
def test_a_cold_start_gives_the_same_answers(case, job):
    case.setup(job)
    log = job["dir"].parent / f"{job['dir'].name}.cold.trace"
    cold = subprocess.run([sys.executable, "-m", "hallo_core", *gen_argv(job)], cwd=job["dir"],
                          env=dict(_env(), **{TRACE: str(log)}), capture_output=True, text=True, timeout=300)
    warm, line = run_bad(job, gen_argv(job), case.needle)
    assert cold.returncode == warm.returncode == 2
    assert one_error_line(cold.stderr, case.needle) == line
    assert trace_lines(log) == []


# -- interrupts: the finished clips stay playable, and one line says how to continue ---------------

def _probe(path: Path):
    """(video frames, audio channels, audio seconds) as PyAV decodes them."""
    import av

    with av.open(str(path)) as c:
        frames = sum(1 for _ in c.decode(c.streams.video[0]))
    with av.open(str(path)) as c:
        a = c.streams.audio[0]
        channels = a.codec_context.channels
        seconds = sum(f.samples for f in c.decode(a)) / a.rate
    return frames, channels, seconds


def _speech_in_one_channel(job, seconds: float, channels: int = 3, speech: int = 1) -> Path:
    """Speech in the middle channel of three, the others silent (averaging would keep a third)."""
    wave, sr = job["base"]["speech"]
    n = int(seconds * sr)
    w = np.zeros((n, channels), np.float32)
    w[:, speech] = wave[:n].mean(axis=1) if wave.ndim == 2 else wave[:n]
    p = job["dir"] / "inputs" / "three_channels.wav"
    sf.write(str(p), w, sr)
    return p


def _needs_faces(job):
    if not job["base"]["faces"]:
        pytest.skip("no offline face landmarker here (tests/landmarks_env.py): a run cannot start")


def _interrupt_after_first_clip(job, sig: int):
    """Start generate, send ``sig`` once the first clip's last step is done (the progress bar
    counts steps over all clips), return the result (tests/support/cli_signals.py explains
    the moment; test_cli_e2e does the same)."""
    return job["base"]["warm"].signal_when(gen_argv(job), job["dir"], r"\| %d/\d+ \[" % OPTIONS["steps"], sig)


def test_ctrl_c_keeps_a_playable_mp4_and_resume_finishes_it(job):
    _needs_faces(job)
    job["audio"] = _speech_in_one_channel(job, 3 * 16 / 25)  # three clips
    out = Path(job["out"])
    ckpt = out.with_name(out.name + ".resume.pt")
    watched = {str(p): _digest(p) for p in (job["image"], job["audio"])}
    r = _interrupt_after_first_clip(job, signal.SIGINT)
    assert r.returncode == 130, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    hint = r.stderr.strip().splitlines()[-1]
    assert hint.startswith(f"interrupted (Ctrl-C): {out} holds the first "), hint
    assert hint.endswith(" --resume") and "continue with: python -m hallo_core generate " in hint
    frames, channels, _ = _probe(out)
    assert frames in (16, 32) and ckpt.is_file()  # whole clips, and it plays
    r = job["base"]["warm"].run(gen_argv(job) + ["--resume"], cwd=job["dir"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"resuming {out} at clip {frames // 16 + 1} of 3" in r.stderr
    assert not ckpt.exists()  # complete: nothing left to resume
    frames, channels, seconds = _probe(out)
    assert frames == 48 and channels == 3 and abs(seconds - 1.92) < 0.1  # the soundtrack as given
    assert {str(p): _digest(p) for p in (job["image"], job["audio"])} == watched


def test_silence_and_no_face_fallback_are_animated_then_sigterm_ends_the_run(job):
    """Silence is animated (a still face) with the warning; --no-face fallback animates a picture
    with no face the no-face row refuses; SIGTERM keeps the clip done, exit 143."""
    _needs_faces(job)
    _picture("gradient")(job)
    job["extra"] += ["--no-face", "fallback"]
    job["audio"] = job["dir"] / "inputs" / "silence.wav"
    sf.write(str(job["audio"]), np.zeros((12800, 2), np.float32), 16000, subtype="PCM_16")
    out = Path(job["out"])
    r = _interrupt_after_first_clip(job, signal.SIGTERM)
    assert r.returncode == 143, r.stderr[-3000:]
    warnings = [x for x in r.stderr.splitlines() if x.startswith("warning: ")]
    assert any("digital silence" in w and "the face will not move" in w for w in warnings), warnings
    assert "face: no face landmarks: the whole image is used as the face region" in r.stderr
    hint = r.stderr.strip().splitlines()[-1]
    assert hint.startswith(f"interrupted (SIGTERM): {out} holds the first 16 frames") and hint.endswith(" --resume")
    assert _probe(out)[0] == 16 and out.with_name(out.name + ".resume.pt").is_file()


def test_ctrl_c_while_the_models_load_leaves_nothing(job):
    _needs_faces(job)
    warm = job["base"]["warm"]
    pid = warm.start(gen_argv(job), cwd=job["dir"])
    warm.wait_for("face: ")  # the checks passed; the weights are being read now
    os.kill(pid, signal.SIGINT)
    r = warm.wait()
    assert r.returncode == 130 and "Traceback" not in r.stderr, r.stderr[-3000:]
    hint = r.stderr.strip().splitlines()[-1]
    assert hint.startswith("interrupted (Ctrl-C): ") and "run again with: python -m hallo_core generate " in hint
    assert not [p for p in job["dir"].rglob("*") if p.is_file() and "out" in p.relative_to(job["dir"]).parts]
