"""``hallo batch`` end to end as a subprocess, in one process and on a local Ray cluster.

Tiny random models in the official layout, the real fixture portraits and the first 0.4 s / 1.5 s
of the fixture speech. Six jobs, one refused by generate's checks; each video must decode to the
frames of a standalone ``generate`` of the same job. Every run uses one torch thread (a Ray worker
on one CPU slot gets one), since the thread count changes float rounding and so the frames.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.support.cli_signals import signals_as_a_terminal_gives_them

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("HALLO_SHARED", REPO.parent / "shared")) / "fixtures"

# job 3 has three clips of two steps: a clip's checkpoint is written once the next clip is in the
# file, so clip 1's is there while clip 3 is made, and the interrupt and the kill land inside it
JOBS = [
    {"image": "portrait_5.jpg", "audio": "short.wav", "out": "out/v1.mp4", "size": 64, "steps": 1},
    {"image": "portrait_5.jpg", "audio": "short.wav", "out": "out/v2.mp4", "size": 64, "steps": 1, "seed": 7,
     "hallo2": True},
    {"image": "portrait_2.jpg", "audio": "three_clips.wav", "out": "out/v3.mp4", "size": 64, "steps": 2},
    {"image": "portrait_5.jpg", "audio": "short.wav", "out": "out/v4.mp4", "size": 64, "steps": 1, "cfg": -1},
    {"image": "portrait_6.jpg", "audio": "short.wav", "out": "out/v5.mp4", "size": 64, "steps": 1, "cfg": 2.0},
    {"image": "portrait_5.jpg", "audio": "short.wav", "out": "out/v6.mp4", "size": 64, "steps": 1, "hallo2": True,
     "mask_rate": 0.5},
]
BAD = 4
GOOD = [i for i in range(1, 7) if i != BAD]


def _env(**extra) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    env.update(extra)
    return env


def _batch_argv(jobs: Path, models: Path, *extra: str) -> list:
    return ["batch", str(jobs), "--models", str(models), "--device", "cpu", *extra]


def _frames(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])])


def _write_jobs(folder: Path, kind: str = "jsonl") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "jsonl":
        path = folder / "jobs.jsonl"
        path.write_text("".join(json.dumps(j) + "\n" for j in JOBS))
    else:
        path = folder / "jobs.csv"
        names = sorted({k for j in JOBS for k in j})
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, names)
            w.writeheader()
            w.writerows({k: str(v).lower() if isinstance(v, bool) else v for k, v in j.items()} for j in JOBS)
    return path


@pytest.fixture(scope="module")
def inp(tmp_path_factory):
    """Models, inputs (in the folder the jobs files sit in) and each good job's standalone video."""
    import shutil

    import soundfile as sf
    import torch

    from hallo_core.cli.main import main
    from tests.support.models_mirror import tiny_models

    if not FIXTURES.is_dir():
        pytest.skip(f"real fixtures not found at {FIXTURES} (../shared is absent)")
    root = tmp_path_factory.mktemp("cli_batch")
    models = tiny_models(root / "models")
    from tests.landmarks_env import offline_landmarks_skip_reason, write_tasks_bundle

    if offline_landmarks_skip_reason():  # no legacy FaceMesh here: the Tasks path on a real-model bundle
        from hallo_core.face.landmarks import TASK_FILENAME

        if not write_tasks_bundle(models / "face_analysis" / "models" / TASK_FILENAME):
            pytest.skip(offline_landmarks_skip_reason())
    src = root / "inputs"
    src.mkdir()
    for n in (2, 5, 6):
        shutil.copy(FIXTURES / f"portrait_{n}.jpg", src)
    wave, sr = sf.read(str(FIXTURES / "speech_1.wav"), dtype="float32")
    sf.write(str(src / "short.wav"), wave[: int(0.4 * sr)], sr)  # 10 frames: one clip
    sf.write(str(src / "three_clips.wav"), wave[: int(1.5 * sr)], sr)  # 38 frames: 16 + 16 + 6
    refs = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for i in GOOD:
            job = JOBS[i - 1]
            out = root / "standalone" / f"v{i}.mp4"
            argv = ["generate", "--models", str(models), "--device", "cpu", "--out", str(out)]
            for k, v in job.items():
                if k == "out":
                    continue
                if k in ("image", "audio"):
                    v = str(src / v)
                if v is True:
                    argv.append("--" + k.replace("_", "-"))
                else:
                    argv += ["--" + k.replace("_", "-"), str(v)]
            assert main(argv) == 0
            refs[i] = _frames(out)
    finally:
        torch.set_num_threads(threads)
    return {"models": models, "src": src, "refs": refs}


@pytest.fixture(scope="module")
def warm(inp):
    """``hallo batch`` runs as children of a warm interpreter (tests/support/cli_runner.py): the same
    entry point without seconds of imports per run. The Ray test starts a cold one."""
    from tests.support import cli_runner

    if not cli_runner.available():
        pytest.skip("the warm CLI runner needs os.fork")
    logs = inp["src"].parent / "logs"
    logs.mkdir(exist_ok=True)
    server = cli_runner.WarmCli(env=_env(), log_dir=logs)
    yield server
    server.close()


def _assert_same_videos(inp, out_dir: Path) -> None:
    for i in GOOD:
        got = _frames(out_dir / f"v{i}.mp4")
        assert got.shape == inp["refs"][i].shape and np.array_equal(got, inp["refs"][i]), f"job {i}"
    assert not (out_dir / f"v{BAD}.mp4").exists()
    assert not list(out_dir.glob("*.resume.pt"))


def _run_until(cmd: list, env: dict, stdout_file: Path, ready, act, timeout: float = 900) -> tuple:
    """Run ``cmd`` cold; once ``ready(stderr so far)`` call ``act(proc, stderr)``; then wait for the end.
    (exit code, stdout, stderr)."""
    buf = bytearray()
    with open(stdout_file, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.PIPE, preexec_fn=signals_as_a_terminal_gives_them)

        def pump():
            while True:
                chunk = os.read(proc.stderr.fileno(), 65536)
                if not chunk:
                    return
                buf.extend(chunk)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        deadline = time.monotonic() + timeout
        try:
            while not ready(bytes(buf)):
                assert proc.poll() is None and time.monotonic() < deadline, buf.decode(errors="replace")[-3000:]
                time.sleep(0.02)
            act(proc, bytes(buf))
            proc.wait(timeout=max(deadline - time.monotonic(), 60))
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # a Ray run then stops its cluster
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        reader.join(timeout=10)
        proc.stderr.close()
    return proc.returncode, stdout_file.read_text(), buf.decode(errors="replace")


def _summary(stdout: str) -> dict:
    rows = {}
    for line in stdout.splitlines():
        m = re.match(r"(\d+) (\S+)\s+(finished earlier|done|bad|failed|interrupted|not run)( \(\d+ runs\))?\s", line)
        if m:
            rows[int(m.group(1))] = m.group(3) + (m.group(4) or "")
    return rows


def test_batch_reads_the_weights_once_and_equals_standalone_generate(inp, warm, tmp_path):
    """Six jobs, one with a guidance scale generate refuses: five videos equal to standalone runs,
    the bad one in one line, exit code 2, each weights file read once."""
    folder = tmp_path / "batch"
    jobs = _write_jobs(folder)
    for f in inp["src"].iterdir():
        os.symlink(f, folder / f.name)
    trace = tmp_path / "trace.log"
    r = warm.run(_batch_argv(jobs, inp["models"]), REPO, env={"HALLO_TRACE_LOADS": str(trace)}, timeout=900)
    assert r.returncode == 2, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    bad = [line for line in r.stderr.splitlines() if line.startswith(f"job {BAD} ")]
    assert len(bad) == 1 and "jobs.jsonl line 4" in bad[0] and "--cfg is -1" in bad[0], r.stderr[-3000:]
    assert _summary(r.stdout) == {**{i: "done" for i in GOOD}, BAD: "bad"}, r.stdout
    assert "5 done, 1 bad" in r.stdout
    reads = [line for line in trace.read_text().splitlines() if "reading" in line]
    assert len(reads) == len(set(reads)), reads  # no file read twice
    assert sum(line.endswith("net.pth") for line in reads) == 2  # hallo and hallo2, once each
    assert sum("VAE" in line for line in reads) == 1 and sum("wav2vec2" in line for line in reads) == 1
    assert "batch" in r.stderr and "job 3" in r.stderr  # the two progress bars
    _assert_same_videos(inp, folder / "out")


def test_interrupted_batch_keeps_finished_jobs_and_continues_the_stopped_one(inp, warm, tmp_path):
    """A CSV of the same jobs, Ctrl-C while job 3 runs: exit 130 with the summary, job 3 a playable
    partial with its checkpoint. Run again: jobs 1 and 2 are not redone (same files), job 3
    continues, and every video equals its standalone run."""
    folder = tmp_path / "batch"
    jobs = _write_jobs(folder, "csv")
    for f in inp["src"].iterdir():
        os.symlink(f, folder / f.name)
    out = folder / "out"
    first_clip = r"job 3: [^\r\n]*\| 2/6 \["  # job 3's first clip has its two steps
    r = warm.signal_when(_batch_argv(jobs, inp["models"]), REPO, first_clip, signal.SIGINT, timeout=900)
    rc, stdout, stderr = r.returncode, r.stdout, r.stderr
    assert rc == 130, stderr[-3000:]
    assert "Traceback" not in stderr and "continue with:" in stderr
    summary = _summary(stdout)
    assert summary == {1: "done", 2: "done", 3: "interrupted", BAD: "bad", 5: "not run", 6: "not run"}, stdout
    v3 = out / "v3.mp4"
    assert v3.with_name("v3.mp4.resume.pt").is_file()
    assert _frames(v3).shape[0] == 16  # the first clip, playable
    kept = {i: os.stat(out / f"v{i}.mp4") for i in (1, 2)}

    r = warm.run(_batch_argv(jobs, inp["models"]), REPO, timeout=900)
    assert r.returncode == 2, r.stderr[-3000:]
    assert _summary(r.stdout) == {1: "finished earlier", 2: "finished earlier", 3: "done", BAD: "bad", 5: "done",
                                  6: "done"}, r.stdout
    assert "job 3: done" in r.stderr and "continued from frame 16" in r.stderr, r.stderr[-3000:]
    for i, st in kept.items():
        now = os.stat(out / f"v{i}.mp4")
        assert (now.st_ino, now.st_mtime_ns, now.st_size) == (st.st_ino, st.st_mtime_ns, st.st_size)
    _assert_same_videos(inp, out)


def test_bad_rows_are_one_line_each_and_the_exit_code_says_so(inp, warm, tmp_path):
    """Rows generate's parser refuses, a duplicate output and an unreadable line: each its own
    line, nothing runs, no weights are read."""
    folder = tmp_path / "bad"
    folder.mkdir()
    src = inp["src"]
    rows = [json.dumps({"image": str(src / "portrait_5.jpg"), "audio": str(src / "short.wav"), "out": "a.mp4",
                        "stepz": 2}),
            json.dumps({"image": str(src / "portrait_5.jpg"), "audio": str(src / "short.wav"), "out": "b.mp4",
                        "frame": "sideways"}),
            json.dumps({"image": str(src / "portrait_5.jpg"), "audio": str(src / "short.wav"), "out": "c.mp4",
                        "device": "cuda"}),
            json.dumps({"image": str(src / "nothere.jpg"), "audio": str(src / "short.wav"), "out": "d.mp4"}),
            "{not json",
            json.dumps({"image": str(src / "portrait_5.jpg"), "audio": str(src / "short.wav"), "out": "d.mp4"})]
    jobs = folder / "jobs.jsonl"
    jobs.write_text("\n".join(rows) + "\n")
    trace = tmp_path / "trace.log"
    r = warm.run(_batch_argv(jobs, inp["models"]), REPO, env={"HALLO_TRACE_LOADS": str(trace)}, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-3000:]
    lines = {int(m.group(1)): ln for ln in r.stderr.splitlines() for m in [re.match(r"job (\d+) \(", ln)] if m}
    assert "unknown field 'stepz'" in lines[1] and "steps" in lines[1]
    assert "sideways" in lines[2] and "choice" in lines[2]
    assert "set for the whole batch" in lines[3]
    assert "does not exist" in lines[4] and "--image" in lines[4]
    assert "not a JSON object" in lines[5]
    assert "also the output of job 4" in lines[6]
    assert _summary(r.stdout) == {i: "bad" for i in range(1, 7)}
    assert not trace.exists() or not trace.read_text().strip()


def test_ray_workers_give_the_same_frames_and_a_killed_worker_s_job_resumes(inp, tmp_path):
    """A local Ray cluster on the CPU with 2 workers: the worker running job 3 is killed once
    job 3 has a checkpoint; the job runs again on a new worker, continues from the checkpoint,
    and every video equals its standalone run."""
    pytest.importorskip("ray", reason="Ray is an optional extra (pip install \".[ray]\"); these tests need it")
    folder = tmp_path / "batch"
    jobs = _write_jobs(folder)
    for f in inp["src"].iterdir():
        os.symlink(f, folder / f.name)
    ckpt = folder / "out" / "v3.mp4.resume.pt"
    running = re.compile(rb"job 3: running on worker \d+ \(pid (\d+) ")
    killed = []

    def kill(proc, buf):
        killed.append(int(running.search(buf).group(1)))
        os.kill(killed[0], signal.SIGKILL)

    cmd = [sys.executable, "-m", "hallo_core", *_batch_argv(jobs, inp["models"], "--workers", "2", "--ray")]
    rc, stdout, stderr = _run_until(cmd, _env(RAY_USAGE_STATS_ENABLED="0"), tmp_path / "stdout.txt",
                                    lambda buf: running.search(buf) is not None and ckpt.is_file(), kill)
    killed = killed[0]
    assert rc == 2, stderr[-4000:]
    assert "ray: 2 workers" in stderr and f"(pid {killed} " in stderr
    assert re.search(r"job 3: worker \d+ died", stderr), stderr[-3000:]
    assert re.search(r"job 3: running on worker \d+ \(pid \d+ on [^)]*\), run 2", stderr), stderr[-3000:]
    assert _summary(stdout) == {**{i: "done" for i in GOOD}, 3: "done (2 runs)", BAD: "bad"}, stdout
    assert re.search(r"job 3: done \([\d.]+ s\): continued from frame (16|32)", stderr), stderr[-3000:]
    _assert_same_videos(inp, folder / "out")
