"""Output safety, atomic writes, download failures, interrupts and the resume checkpoint's end."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from hallo_core.assets.download import download_guard
from hallo_core.errors import UserError
from hallo_core.cli.interrupts import InterruptGuard, Interrupted, interrupt_hint, resume_command
from hallo_core.media.atomic import atomic_output, check_output_path, temp_path_for


@pytest.fixture
def inputs(tmp_path):
    img = tmp_path / "in" / "face.png"
    img.parent.mkdir()
    img.write_bytes(b"png")
    wav = tmp_path / "in" / "speech.wav"
    wav.write_bytes(b"wav")
    models = tmp_path / "models"
    (models / "hallo").mkdir(parents=True)
    (models / "hallo" / "net.pth").write_bytes(b"weights")
    return {"image": img, "audio": wav, "models": models}


def _refused(out, inputs, needle):
    from hallo_core.cli.common import words

    with pytest.raises(UserError) as e:
        check_output_path(out, inputs)
    msg = str(e.value.placed(words))  # the CLI's words: the keys are --out, --image, ...
    assert needle in msg and "(--out)" in msg and "\n" not in msg
    return msg


def test_output_naming_an_input_is_refused_in_every_spelling(tmp_path, inputs):
    img = inputs["image"]
    _refused(img, inputs, "is the --image file")
    _refused(tmp_path / "in" / ".." / "in" / "face.png", inputs, "is the --image file")
    link = tmp_path / "link.mp4"
    link.symlink_to(inputs["audio"])
    _refused(link, inputs, "is the --audio file")
    hard = tmp_path / "hard.mp4"
    os.link(inputs["audio"], hard)
    _refused(hard, inputs, "is the --audio file")
    _refused(inputs["models"] / "hallo" / "net.pth", inputs, "would overwrite a file of the --models folder")
    _refused(inputs["models"], inputs, "is a folder")
    check_output_path(inputs["models"] / "new.mp4", inputs)  # a new file is no harm


def test_output_folder_problems(tmp_path, inputs):
    _refused(tmp_path, inputs, "is a folder")
    _refused(str(tmp_path / "newdir") + os.sep, inputs, "is a folder")
    _refused(inputs["image"] / "out.mp4", inputs, "is a file, so the folder")
    with pytest.raises(UserError, match="no output file given"):
        check_output_path("", inputs)
    check_output_path(tmp_path / "a" / "b" / "out.mp4", inputs)  # folders are made later
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            _refused(ro / "out.mp4", inputs, "is not writable")
        finally:
            ro.chmod(0o700)


def test_an_output_named_for_another_container_is_refused(tmp_path, inputs):
    """An H.264 mp4 under a .gif or .avi name opens in no player that trusts the name."""
    assert "has .gif, but the file written is an MP4 video" in _refused(tmp_path / "talk.gif", inputs, "name it talk.mp4")
    _refused(tmp_path / "out.avi", inputs, "name it out.mp4")
    _refused(tmp_path / "out", inputs, "has no extension")
    check_output_path(tmp_path / "OUT.MP4", inputs)
    check_output_path(tmp_path / "out.mov", inputs)


def test_atomic_output_replaces_only_when_complete(tmp_path):
    final = tmp_path / "video.mp4"
    final.write_bytes(b"old video")
    with pytest.raises(RuntimeError):
        with atomic_output(final) as tmp:
            assert tmp.parent == final.parent and tmp.suffix == ".mp4" and tmp != final
            tmp.write_bytes(b"half")
            raise RuntimeError("encoder failed")
    assert final.read_bytes() == b"old video" and not temp_path_for(final).exists()
    with pytest.raises(KeyboardInterrupt):
        with atomic_output(final) as tmp:
            tmp.write_bytes(b"half")
            raise KeyboardInterrupt
    assert final.read_bytes() == b"old video" and not temp_path_for(final).exists()
    with atomic_output(final) as tmp:
        tmp.write_bytes(b"new video")
        assert final.read_bytes() == b"old video"  # still the old one while writing
    assert final.read_bytes() == b"new video"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["video.mp4"]


# -- downloads -----------------------------------------------------------------------------------

FILES = [("fudan-generative-ai/hallo", "hallo/net.pth"), ("fudan-generative-ai/hallo", "sd-vae-ft-mse/config.json")]


def test_network_failure_is_one_line_and_leaves_no_empty_folder(tmp_path):
    import requests

    root = tmp_path / "new" / "models"
    with pytest.raises(UserError) as e:
        with download_guard(root, FILES) as r:
            (r / "hallo").mkdir(parents=True)
            (r / ".cache" / "huggingface" / "download").mkdir(parents=True)
            raise requests.exceptions.ConnectionError("Max retries exceeded with url: /api/models/...")
    msg = str(e.value)
    assert msg.startswith("download failed: no connection to huggingface.co (https://huggingface.co/"
                          "fudan-generative-ai/hallo: hallo/net.pth, sd-vae-ft-mse/config.json) (models): "
                          "retry when online, or download those files in a browser and place each at ")
    assert e.value.key == "models"  # each host names the models folder its own way
    assert str(root / "hallo" / "net.pth") in msg and "\n" not in msg
    assert not (tmp_path / "new").exists()  # every folder the download made is gone


def test_a_long_file_list_is_written_to_a_file_the_line_names(tmp_path):
    """The full hallo bundle does not fit a readable line: the line names a file that lists every
    file with its URL and destination, and a later download that brings them removes it."""
    import requests

    from hallo_core.assets.download import LIST_NAME, _prune_file_list
    from hallo_core.assets.layout import files_to_fetch

    plan = files_to_fetch(["hallo", "hallo2", "hallo2-4k"])
    root = tmp_path / "models"
    with pytest.raises(UserError) as e:
        with download_guard(root, plan):
            raise requests.exceptions.ConnectionError("Name or service not known")
    msg, listed = str(e.value), root / LIST_NAME
    assert "\n" not in msg and "..." not in msg and len(msg) < 600
    assert msg.startswith(f"download failed: no connection to huggingface.co ({len(plan)} files of ")
    assert f"every one listed in {listed}" in msg
    rows = [ln.split("  ->  ") for ln in listed.read_text().splitlines()[1:]]
    assert rows == [[f"https://huggingface.co/{repo}/resolve/main/{f}", str(root / f)] for repo, f in plan]
    assert sorted(p.name for p in root.iterdir()) == [LIST_NAME]  # no folder left, only the list
    for _, f in plan[:-1]:  # placed by hand, all but one
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        (root / f).write_bytes(b"x")
    _prune_file_list(root)
    assert listed.read_text().splitlines()[1:] == [f"https://huggingface.co/{plan[-1][0]}/resolve/main/"
                                                   f"{plan[-1][1]}  ->  {root / plan[-1][1]}"]
    (root / plan[-1][1]).parent.mkdir(parents=True, exist_ok=True)
    (root / plan[-1][1]).write_bytes(b"x")
    _prune_file_list(root)
    assert not listed.exists()


def test_failed_download_keeps_existing_folders_and_files(tmp_path):
    root = tmp_path / "models"
    (root / "vae").mkdir(parents=True)
    (root / "hallo").mkdir()
    (root / "hallo" / "partial.bin").write_bytes(b"x")
    with pytest.raises(UserError, match="download failed: OSError"):
        with download_guard(root, FILES) as r:
            (r / "wav2vec" / "sub").mkdir(parents=True)
            raise OSError("Read-only file system")
    assert (root / "vae").is_dir() and (root / "hallo" / "partial.bin").is_file()
    assert not (root / "wav2vec").exists()


def _hub_response(status):
    import importlib
    import typing

    from huggingface_hub.errors import HfHubHTTPError

    # a response of the HTTP library huggingface_hub builds its errors on (httpx2 in 2.x)
    cls = typing.get_type_hints(HfHubHTTPError.__init__)["response"]
    http = importlib.import_module(cls.__module__.split(".")[0])
    return cls(status, request=http.Request("GET", "https://huggingface.co/api/models/x"))


def test_repository_errors_are_named(tmp_path):
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError

    with pytest.raises(UserError, match="repository was not found or needs a login"):
        with download_guard(tmp_path / "m", FILES):
            raise RepositoryNotFoundError("404 Client Error", response=_hub_response(404))
    with pytest.raises(UserError, match="no connection to huggingface.co"):
        with download_guard(tmp_path / "m", FILES):
            try:
                raise TimeoutError("ConnectTimeout")
            except TimeoutError as cause:
                raise LocalEntryNotFoundError("cannot find the requested files") from cause
    assert not (tmp_path / "m").exists()


# -- interrupts and resume -----------------------------------------------------------------------

@pytest.fixture
def default_signals():
    """SIGINT and SIGTERM as a terminal-started Python has them, whatever the launcher of this test
    run left (a shell script's `&` starts it with SIGINT ignored); restored afterwards."""
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    for s, h in old.items():
        signal.signal(s, h)


def test_soft_interrupt_sets_the_flag_and_a_second_stops(tmp_path, default_signals):
    with InterruptGuard() as g:
        with g.soft():
            os.kill(os.getpid(), signal.SIGINT)
            assert g.should_stop() and g.exit_code == 130 and g.signal_name == "Ctrl-C"
            with pytest.raises(Interrupted):
                os.kill(os.getpid(), signal.SIGTERM)
        with pytest.raises(Interrupted):
            g.check()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_interrupt_before_writing_stops_at_once(default_signals):
    with InterruptGuard() as g:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(10**6):  # the handler raises in the main thread before this ends
                pass
        assert g.exit_code == 143


def test_a_signal_the_launcher_ignores_stays_ignored(default_signals):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with InterruptGuard() as g:
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGINT)
        assert not g.should_stop()
        with pytest.raises(KeyboardInterrupt):  # SIGTERM is still the guard's
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(10**6):
                pass
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_the_interrupt_tests_pass_when_launched_with_sigint_ignored(tmp_path):
    """A test run started with SIGINT ignored (a script's `pytest &`) passes these tests too."""
    import subprocess

    from tests.conftest import REPO

    here = f"{Path(__file__).relative_to(REPO)}"
    tests = [f"{here}::{t}" for t in ("test_soft_interrupt_sets_the_flag_and_a_second_stops",
                                      "test_interrupt_before_writing_stops_at_once",
                                      "test_a_signal_the_launcher_ignores_stays_ignored")]
    launcher = ("import signal, subprocess, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                "sys.exit(subprocess.call(sys.argv[1:]))")
    r = subprocess.run([sys.executable, "-c", launcher, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "-m", "", *tests], cwd=REPO, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0 and "3 passed" in r.stdout, r.stdout[-3000:] + r.stderr[-2000:]


def test_resume_hint_names_the_command(tmp_path):
    argv = ["generate", "--models", "m", "--out", str(tmp_path / "my out.mp4")]
    cmd = resume_command(argv)
    assert cmd.endswith("--resume") and "'" in cmd and cmd.startswith("python -m hallo_core generate")
    assert resume_command(argv + ["--resume"]).count("--resume") == 1
    line = interrupt_hint(tmp_path / "o.mp4", 48, 25, argv)
    assert "holds the first 48 frames (1.9 s) and plays" in line and cmd in line and "\n" not in line


def test_discard_state_removes_the_checkpoint(tmp_path):
    import torch

    from hallo_core.pipeline.resume import ResumeState, discard_state, load_state, save_state

    ck = tmp_path / "o.mp4.resume.pt"
    save_state(ck, ResumeState("h", 1, 16, torch.zeros(2, 3, 4, 4), torch.zeros(5, dtype=torch.uint8)))
    assert load_state(ck).frames_done == 16
    (tmp_path / "o.mp4.resume.pt.tmp").write_bytes(b"stale")
    assert discard_state(ck) is True
    assert list(tmp_path.iterdir()) == []
    assert discard_state(ck) is False


def test_trace_hook_logs_weight_reads(tmp_path, monkeypatch):
    import torch

    from hallo_core.io.checkpoints import TRACE_ENV, load_state_dict_file

    log = tmp_path / "trace.log"
    monkeypatch.setenv(TRACE_ENV, str(log))
    torch.save({"a": torch.zeros(2)}, tmp_path / "w.pth")
    load_state_dict_file(tmp_path / "w.pth")
    assert log.read_text() == f"hallo-trace: reading weights {tmp_path / 'w.pth'}\n"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_guard_is_inert_off_the_main_thread():
    import threading

    out = {}

    def run():
        with InterruptGuard() as g:
            out["ok"] = not g._old

    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert out["ok"]
