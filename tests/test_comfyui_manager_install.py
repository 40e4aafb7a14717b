"""Installing the pack the way ComfyUI-Manager does it, from a git URL (slow: two server starts and a
clone; not in the default suite lists).

ComfyUI >= 0.17 starts the Manager (the registry package ``comfyui-manager``, pinned in the tree's
manager_requirements.txt) with ``--enable-manager``. Its "Install via Git URL" (served with
``--enable-manager-legacy-ui``; security level ``weak`` or ``normal-``, as the Manager asks for git
URLs) clones the repository into custom_nodes, runs ``pip install`` for every line of
requirements.txt, and asks for a restart; the restarted server must load the pack. The repository is a
local clone of this checkout's HEAD served as a ``file://`` URL; the server runs from a temporary base
directory, so the ComfyUI tree itself is not touched.

The Manager installs into the Python the server runs in, so this test runs only with
``COMFYUI_MANAGER_PYTHON`` naming a disposable copy of a ComfyUI 0.17 environment (see
docs/development.md). With ``HALLO_MANAGER_WHEELS`` (a folder holding a soxr wheel: a requirement of the
pack's that neither ComfyUI nor the Manager imports) it first uninstalls soxr there and checks that the
Manager installs it again from that folder (no index is reached).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import urllib.error
from pathlib import Path

import pytest

from tests.comfy_server import COMFYUI_PATH, INSTALL_NAME, Server, _free_port

REPO = Path(__file__).resolve().parents[1]
PYTHON = os.environ.get("COMFYUI_MANAGER_PYTHON")
WHEELS = os.environ.get("HALLO_MANAGER_WHEELS")

pytestmark = pytest.mark.skipif(
    not (COMFYUI_PATH and PYTHON and Path(COMFYUI_PATH, "manager_requirements.txt").is_file()),
    reason="needs COMFYUI_PATH (ComfyUI >= 0.17, with manager_requirements.txt) and COMFYUI_MANAGER_PYTHON "
           "(a disposable copy of its environment, which the Manager installs into)")


def _start(base: Path, log: Path) -> Server:
    port = _free_port()
    env = dict(os.environ)
    if WHEELS:  # the Manager's pip (or uv, its fallback) calls inherit these: the local folder only
        env.update(PIP_FIND_LINKS=WHEELS, PIP_NO_INDEX="1", UV_FIND_LINKS=WHEELS, UV_NO_INDEX="1", UV_OFFLINE="1")
    env["COLUMNS"] = "400"  # the Manager prints through rich: no wrapped log lines
    cmd = [PYTHON, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port), "--disable-auto-launch",
           "--base-directory", str(base), "--database-url", f"sqlite:///{base / 'user' / 'comfyui.db'}",
           "--enable-manager", "--enable-manager-legacy-ui"]
    f = open(log, "a")
    proc = subprocess.Popen(cmd, cwd=COMFYUI_PATH, stdout=f, stderr=subprocess.STDOUT, env=env)
    srv = Server(port, proc, base, log)
    t0 = time.time()
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"ComfyUI exited at startup:\n{log.read_text()[-4000:]}")
        try:
            srv.get("/system_stats")
            return srv
        except (urllib.error.URLError, ConnectionError, OSError):
            if time.time() - t0 > 900:
                raise RuntimeError(f"ComfyUI did not start in 900 s:\n{log.read_text()[-4000:]}")
            time.sleep(1.0)


def _stop(srv: Server) -> None:
    srv.proc.terminate()
    try:
        srv.proc.wait(30)
    except subprocess.TimeoutExpired:
        srv.proc.kill()


def _pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "pip", *args], capture_output=True, text=True, timeout=600)


def test_manager_installs_from_a_git_url_and_the_restarted_server_loads_the_pack(tmp_path):
    import urllib.request

    src = tmp_path / "src" / INSTALL_NAME  # the URL's last part names the folder the Manager creates
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(REPO), str(src)], check=True, timeout=600)
    head = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    url = f"file://localhost{src}"
    base = tmp_path / "base"
    (base / "custom_nodes").mkdir(parents=True)
    manager_dir = base / "user" / "__manager"
    manager_dir.mkdir(parents=True)
    # weak: the Manager's level for git URLs; offline: no registry or channel fetches from this test
    (manager_dir / "config.ini").write_text("[default]\nsecurity_level = weak\nnetwork_mode = offline\n"
                                            "file_logging = False\n")
    reinstall = None
    if WHEELS and any(Path(WHEELS).glob("soxr-*.whl")):
        assert _pip("uninstall", "-y", "soxr").returncode == 0
        reinstall = "soxr"
    log = tmp_path / "server.log"
    srv = _start(base, log)
    try:
        req = urllib.request.Request(srv.url("/v2/customnode/install/git_url"), data=url.encode(), method="POST")
        with urllib.request.urlopen(req, timeout=900) as r:
            assert r.status == 200
    finally:
        _stop(srv)
    installed = base / "custom_nodes" / INSTALL_NAME
    first = log.read_text()
    assert (installed / "__init__.py").is_file(), first[-3000:]
    got = subprocess.run(["git", "-C", str(installed), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert got == head
    # pip install for every requirement line
    reqs = [ln.split("#")[0].strip() for ln in (REPO / "requirements.txt").read_text().splitlines()]
    reqs = [r for r in reqs if r]
    assert "Install: pip packages" in first, first[-3000:]
    flat = re.sub(r"\s+", " ", first)
    for r in reqs:  # pip's (or uv's) command line as the Manager logs it, or its own refusal to touch
        # a package it protects from downgrades (safetensors, transformers: already there with ComfyUI)
        assert f"'install', '{r}'" in flat or f"skip black listed pip installation: '{r}'" in flat, (r, first[-3000:])
    if reinstall:
        assert _pip("show", reinstall).returncode == 0, f"the Manager did not install {reinstall}"

    restart_log = tmp_path / "restart.log"
    srv = _start(base, restart_log)
    try:
        info = srv.get("/object_info/Hallo_Sampler")
        assert info["Hallo_Sampler"]["python_module"] == f"custom_nodes.{INSTALL_NAME}"
    finally:
        _stop(srv)
    text = restart_log.read_text()
    assert "IMPORT FAILED" not in text and "Traceback" not in text, text[-3000:]
    # the record of what a user sees: the Manager's lines during install, the import summary after restart
    keep = [ln for ln in first.splitlines() if any(k in ln for k in ("Install:", "CLONE", "EXECUTE", "Installation was",
                                                                      "After restarting", "Requirement"))]
    keep += [ln for ln in text.splitlines() if INSTALL_NAME in ln]
    (Path(os.environ.get("HALLO_MANAGER_LOG", tmp_path / "manager-lines.txt"))).write_text("\n".join(keep) + "\n")
