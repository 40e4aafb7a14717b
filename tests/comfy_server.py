"""Start a real ComfyUI server with this pack for the integration and browser tests (not a test module)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# One ComfyUI tree per test run: COMFYUI_PATH (the checkout) and COMFYUI_PYTHON (a Python with its
# requirements and requirements-test.txt). docs/development.md lists the tested versions and the
# command for each; comfy_version() says which one a run is testing.
COMFYUI_PATH = os.environ.get("COMFYUI_PATH")
PYTHON = os.environ.get("COMFYUI_PYTHON", sys.executable)
INSTALL_NAME = "hallo-talking-head"  # the folder Manager, comfy-cli and the documented git clone create


def _pack_name() -> str:
    """The pack's folder name in the test server's custom_nodes: the documented install name (its
    locales name the template category after it), or a unique one when the ComfyUI under test
    already has a folder of that name (the server still loads only this copy)."""
    if COMFYUI_PATH and os.path.lexists(os.path.join(COMFYUI_PATH, "custom_nodes", INSTALL_NAME)):
        return f"hallo_pack_{uuid.uuid4().hex[:8]}"
    return INSTALL_NAME


PACK_NAME = _pack_name()
SHORT_SECONDS = 1.1


def comfy_version() -> tuple:
    """(major, minor, patch) of the ComfyUI tree at COMFYUI_PATH, read from its comfyui_version.py."""
    import re

    text = (Path(COMFYUI_PATH) / "comfyui_version.py").read_text()
    m = re.search(r'__version__\s*=\s*"(\d+)\.(\d+)\.(\d+)', text)
    return tuple(int(x) for x in m.groups())


# Prefix of a script run in ComfyUI's Python: imports ComfyUI (CPU) and this pack by path, as
# ComfyUI's loader does; ``name`` is the pack's module name afterwards. ComfyUI's own regular
# ``tests`` package shadows this repository's, so ``load_support("tiny_upscaler")`` imports a
# module of tests/support by path (under the package name ``hallo_test_support``).
PACK_IMPORT = textwrap.dedent("""
    import importlib, importlib.util, json, os, sys, tempfile
    sys.path.insert(0, os.environ["COMFYUI_PATH"]); sys.path.insert(0, os.environ["REPO"])
    from comfy.cli_args import args
    args.cpu = True
    import torch
    import folder_paths
    repo = os.environ["REPO"]
    name = repo.replace(".", "_x_")
    spec = importlib.util.spec_from_file_location(name, os.path.join(repo, "__init__.py"),
                                                  submodule_search_locations=[repo])
    pack = importlib.util.module_from_spec(spec); sys.modules[name] = pack; spec.loader.exec_module(pack)

    def load_support(module):
        if "hallo_test_support" not in sys.modules:
            folder = os.path.join(repo, "tests", "support")
            s = importlib.util.spec_from_file_location("hallo_test_support", os.path.join(folder, "__init__.py"),
                                                       submodule_search_locations=[folder])
            m = importlib.util.module_from_spec(s); sys.modules["hallo_test_support"] = m; s.loader.exec_module(m)
        return importlib.import_module("hallo_test_support." + module)
""")


def run_in_comfy_python(script: str, timeout: float = 900, **env) -> dict:
    """Run PACK_IMPORT + ``script`` in COMFYUI_PYTHON; the JSON on its last stdout line.

    Skips the calling test without COMFYUI_PATH (the nodes import comfy_api).
    """
    import pytest

    if not COMFYUI_PATH:
        pytest.skip("COMFYUI_PATH is not set (the nodes import ComfyUI's comfy_api)")
    import tempfile

    # the scripts' temporary model folders and outputs (hundreds of MB) go when the script ends
    with tempfile.TemporaryDirectory(prefix="hallo_comfy_script_") as tmp:
        full_env = dict(os.environ, REPO=str(REPO), TMPDIR=tmp, **env)
        out = subprocess.run([PYTHON, "-c", PACK_IMPORT + textwrap.dedent(script)], env=full_env, cwd=str(REPO),
                             capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-4000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def shared_fixtures() -> Path:
    """../shared/fixtures (module-scoped servers cannot use conftest's function-scoped fixture)."""
    import pytest

    from tests.conftest import FIXTURES

    if not FIXTURES.is_dir():
        pytest.skip(f"real fixtures not found at {FIXTURES} (../shared is absent)")
    return FIXTURES


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def execution_errors(entry: dict) -> str:
    """The execution errors of a finished prompt's history entry: node type, message, traceback tail."""
    return "\n".join(f"{m[1]['node_type']}: {m[1]['exception_message']}\n{''.join(m[1]['traceback'])[-2500:]}"
                      for m in entry["status"]["messages"] if m[0] == "execution_error")


def output_files(srv: "Server", entry: dict, suffix: str) -> list[Path]:
    """The files a prompt saved to the server's output folder whose names end with ``suffix``."""
    out = []
    for ui in entry["outputs"].values():
        for item in ui.get("images", []) + ui.get("videos", []):
            if item.get("type") == "output" and item["filename"].endswith(suffix):
                out.append(srv.root / "output" / item.get("subfolder", "") / item["filename"])
    return sorted(out)


def short_clip_frames() -> int:
    """Frames of the SHORT_SECONDS speech cut the server suites use (44.1 kHz in, 16 kHz at 25 fps)."""
    return math.ceil(round(SHORT_SECONDS * 44100) / 44100 * 16000 / 640)


class Server:
    def __init__(self, port: int, proc: subprocess.Popen, root: Path, log: Path):
        self.port, self.proc, self.root, self.log = port, proc, root, log

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str):
        with urllib.request.urlopen(self.url(path), timeout=30) as r:
            return json.load(r)

    def post(self, path: str, body: dict):
        req = urllib.request.Request(self.url(path), data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            data = r.read()
            return json.loads(data) if data else None

    def queue(self, prompt: dict, client_id: str | None = None) -> str:
        """``client_id``: the websocket client that gets the prompt's messages (see :meth:`listen`)."""
        try:
            return self.post("/prompt", {"prompt": prompt, "client_id": client_id or uuid.uuid4().hex})["prompt_id"]
        except urllib.error.HTTPError as e:
            raise AssertionError(f"/prompt rejected the workflow: {e.read().decode()[:3000]}") from None

    def wait(self, prompt_id: str, timeout: float = 1500.0) -> dict:
        t0 = time.time()
        while time.time() - t0 < timeout:
            assert self.proc.poll() is None, f"server died:\n{self.log.read_text()[-3000:]}"
            hist = self.get(f"/history/{prompt_id}")
            if prompt_id in hist and hist[prompt_id].get("status", {}).get("completed") is not None:
                st = hist[prompt_id]["status"]
                if st["completed"] or st["status_str"] == "error":
                    return hist[prompt_id]
            time.sleep(1.0)
        raise AssertionError(f"prompt {prompt_id} did not finish in {timeout} s")

    def listen(self) -> "Messages":
        """A websocket client collecting the server's JSON messages (binary previews are skipped)."""
        return Messages(self.port)

    def running(self) -> bool:
        return bool(self.get("/queue")["queue_running"])


class Messages:
    """The JSON messages a client receives, gathered by a background thread (websocket-client)."""

    def __init__(self, port: int):
        import threading

        import websocket

        self.client_id = uuid.uuid4().hex
        self.ws = websocket.create_connection(f"ws://127.0.0.1:{port}/ws?clientId={self.client_id}", timeout=5)
        self.items: list[tuple[str, dict]] = []
        self._stop = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        import websocket

        while not self._stop:
            try:
                msg = self.ws.recv()
            except websocket.WebSocketTimeoutException:
                continue
            except Exception:  # closed
                return
            if not msg:  # "" once the connection closes
                return
            if isinstance(msg, str):
                d = json.loads(msg)
                self.items.append((d.get("type"), d.get("data") or {}))

    def of(self, kind: str, since: int = 0) -> list[dict]:
        return [d for t, d in self.items[since:] if t == kind]

    def wait_for(self, kind: str, pred=lambda d: True, since: int = 0, timeout: float = 600.0) -> dict:
        t0 = time.time()
        while time.time() - t0 < timeout:
            hit = [d for d in self.of(kind, since) if pred(d)]
            if hit:
                return hit[0]
            time.sleep(0.05)
        raise AssertionError(f"no {kind} message in {timeout} s; got {[t for t, _ in self.items][-20:]}")

    def close(self) -> None:
        self._stop = True
        self.ws.close()


def build_models(models: Path, upscaler: bool = True, faces=None) -> Path:
    """``models/hallo`` and ``models/upscale_models`` with every tiny model the example workflows load
    (``upscaler`` False leaves out the 650 MB of official-size upscaler files; ``faces``: where the tiny
    SCRFD reports faces, see tests/support/models_folder.py)."""
    from tests.support.models_folder import build_models_dir, write_upscaler_models

    build_models_dir(models / "hallo", faces=faces)
    (models / "upscale_models").mkdir(parents=True, exist_ok=True)
    if upscaler:
        write_upscaler_models(models / "hallo", models / "upscale_models")
    prepare_landmarks(models)
    return models


def prepare_landmarks(models: Path) -> str | None:
    """Make real face landmarks available to the server's Python; None when they are, else why not.

    The tiny folder has no landmarker .task (it cannot be downloaded here). The server's mediapipe may
    still bundle the legacy FaceMesh; if not, a .task bundle of real mediapipe models is written (from
    the test Python's mediapipe or HALLO_MEDIAPIPE_LEGACY_WHEEL, see tests/landmarks_env.py).
    """
    from hallo_core.face.landmarks import TASK_FILENAME
    from tests.landmarks_env import offline_landmarks_skip_reason, write_tasks_bundle

    task = models / "hallo" / "face_analysis" / "models" / TASK_FILENAME
    if task.is_file():
        return None
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); "
             "from tests.landmarks_env import offline_landmarks_skip_reason as r; print(r() or '')")
    out = subprocess.run([PYTHON, "-c", probe, str(REPO)], capture_output=True, text=True, timeout=120)
    if out.returncode == 0 and not out.stdout.strip():
        return None  # the server's mediapipe has the legacy FaceMesh
    if write_tasks_bundle(task):
        return None
    return (f"the server's Python has no legacy FaceMesh ({out.stdout.strip() or out.stderr.strip()[-300:]}) and "
            f"no real mediapipe models to bundle: {offline_landmarks_skip_reason()}")


def landscape(fixtures_dir: Path):
    """A 1280x720 photo: fixture portrait 6 at 560 px in the middle of its own blurred, stretched copy
    (textured all over, so "equals the source" outside the crop means something, and face-free there)."""
    import cv2
    import numpy as np
    from PIL import Image

    p = np.asarray(Image.open(fixtures_dir / "portrait_6.jpg").convert("RGB"))
    canvas = cv2.GaussianBlur(cv2.resize(p, (1280, 720), interpolation=cv2.INTER_AREA), (0, 0), 25)
    canvas[80:640, 360:920] = cv2.resize(p, (560, 560), interpolation=cv2.INTER_AREA)
    return canvas


# The two-people photo: where its faces are, in photo pixels (around what mediapipe finds there).
TWO_PEOPLE_SIZE = (1280, 640)
TWO_PEOPLE_FACES = [(185, 158, 405, 378), (781, 167, 1001, 387)]


def two_people(fixtures_dir: Path):
    """A 1280x640 photo of two people: fixture portraits 2 and 6 at 400 px, side by side on a blurred,
    stretched copy of portrait 5 (textured all over, face-free outside the portraits)."""
    import cv2
    import numpy as np
    from PIL import Image

    def read(n):
        return np.asarray(Image.open(fixtures_dir / f"portrait_{n}.jpg").convert("RGB"))

    canvas = cv2.GaussianBlur(cv2.resize(read(5), TWO_PEOPLE_SIZE, interpolation=cv2.INTER_AREA), (0, 0), 25)
    for n, x in ((2, 120), (6, 760)):
        canvas[120:520, x:x + 400] = cv2.resize(read(n), (400, 400), interpolation=cv2.INTER_AREA)
    return canvas


def two_people_scrfd_faces(boxes=None):
    """Photo boxes -> the tiny SCRFD's ``faces`` (fractions of its square canvas; the photo is 2:1)."""
    w = TWO_PEOPLE_SIZE[0]
    return [tuple(v / w for v in b) for b in (TWO_PEOPLE_FACES if boxes is None else boxes)]


@contextlib.contextmanager
def launch(root: Path, fixtures_dir: Path, with_models: bool = True, models: Path | None = None):
    """Start ComfyUI (``main.py --cpu``) on a free port with this pack and a temporary models folder
    (``models``: an existing folder from :func:`build_models` to use instead)."""
    import soundfile as sf

    if models is None:
        models = root / "models"
        (models / "hallo").mkdir(parents=True)
        (models / "upscale_models").mkdir(parents=True)
        if with_models:
            build_models(models)
    (root / "custom_nodes").mkdir(parents=True)
    os.symlink(REPO, root / "custom_nodes" / PACK_NAME, target_is_directory=True)
    for d in ("input", "output", "user", "temp"):
        (root / d).mkdir()
    shutil.copy(fixtures_dir / "portrait_2.jpg", root / "input" / "hallo_portrait.jpg")
    from PIL import Image

    Image.fromarray(landscape(fixtures_dir)).save(root / "input" / "hallo_landscape.png")
    Image.fromarray(two_people(fixtures_dir)).save(root / "input" / "hallo_two_people.png")
    data, sr = sf.read(str(fixtures_dir / "speech_1.wav"))
    sf.write(str(root / "input" / "hallo_speech.wav"), data, sr)
    sf.write(str(root / "input" / "hallo_speech_short.wav"), data[: int(SHORT_SECONDS * sr)], sr)
    # the second voice of the two-people workflow: another cut of the speech, shorter
    second = data[int(2.0 * sr):]
    sf.write(str(root / "input" / "hallo_speech_2.wav"), second, sr)
    sf.write(str(root / "input" / "hallo_speech_2_short.wav"), second[: int(SHORT_SECONDS / 2 * sr)], sr)
    (root / "extra_model_paths.yaml").write_text(
        f"hallo_test:\n  custom_nodes: {root / 'custom_nodes'}\n  hallo: {models / 'hallo'}\n"
        f"  upscale_models: {models / 'upscale_models'}\n")
    port = _free_port()
    log = root / "server.log"
    cmd = [PYTHON, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port), "--disable-auto-launch",
           "--extra-model-paths-config", str(root / "extra_model_paths.yaml"),
           "--input-directory", str(root / "input"), "--output-directory", str(root / "output"),
           "--user-directory", str(root / "user"), "--temp-directory", str(root / "temp"),
           "--disable-all-custom-nodes", "--whitelist-custom-nodes", PACK_NAME]
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, cwd=COMFYUI_PATH, stdout=f, stderr=subprocess.STDOUT)
    srv = Server(port, proc, root, log)
    try:
        t0 = time.time()
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited at startup:\n{log.read_text()[-4000:]}")
            try:
                srv.get("/system_stats")
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if time.time() - t0 > 240:
                    raise RuntimeError(f"ComfyUI did not start in 240 s:\n{log.read_text()[-4000:]}")
                time.sleep(1.0)
        yield srv
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()




@contextlib.contextmanager
def face_server(root: Path, faces=None):
    """A server with tiny models (no upscaler files) and real landmarks; skips the caller without them.
    ``faces``: where the tiny SCRFD reports faces (default: one in the middle). Yields (server, fixtures folder)."""
    import pytest

    fixtures_dir = shared_fixtures()
    models = build_models(root / "models", upscaler=False, faces=faces)
    reason = prepare_landmarks(models)
    if reason:
        pytest.skip(reason)
    with launch(root / "comfy", fixtures_dir, models=models) as srv:
        srv.models = models
        yield srv, fixtures_dir
