"""The ComfyUI frontend (headless Chromium) loads every example workflow, fetched the way its template
browser fetches it, with a complete tiny models folder: no missing-nodes and no missing-models dialog, and
no node grown past its saved size (so the static layout test sees what is drawn). With a model file
removed, the dialog names that file. The pack's web extension registers.

Skipped unless COMFYUI_PATH is set (see test_comfyui_integration.py) and a Chromium binary is found
(``chromium`` / ``chromium-browser`` / ``google-chrome`` on PATH, or CHROMIUM=<path>). The browser is driven
through the DevTools protocol over its websocket (websocket-client).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

if not os.environ.get("COMFYUI_PATH"):
    pytest.skip("COMFYUI_PATH is not set: the browser test needs a ComfyUI checkout to serve the frontend",
                allow_module_level=True)
BROWSER = os.environ.get("CHROMIUM") or next(
    (shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
if not BROWSER:
    pytest.skip("no Chromium found (apt-get install chromium, or set CHROMIUM)", allow_module_level=True)
websocket = pytest.importorskip("websocket", reason="websocket-client is needed to drive Chromium")

from tests import workflow_format as wf  # noqa: E402
from tests.comfy_server import PACK_NAME, _free_port, build_models, launch, shared_fixtures  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
NAMES = sorted(wf.EXAMPLES)


class Page:
    """Minimal DevTools-protocol client for one page target."""

    def __init__(self, ws_url: str):
        self.ws = websocket.create_connection(ws_url, timeout=60, suppress_origin=True)
        self.ids = itertools.count(1)

    def call(self, method: str, **params):
        i = next(self.ids)
        self.ws.send(json.dumps({"id": i, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == i:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def eval(self, expr: str, timeout: float = 60.0):
        r = self.call("Runtime.evaluate", expression=expr, awaitPromise=True, returnByValue=True,
                      timeout=int(timeout * 1000))
        if "exceptionDetails" in r:
            raise RuntimeError(f"page error: {json.dumps(r['exceptionDetails'])[:1500]}")
        return r["result"].get("value")

    def wait_for(self, expr: str, timeout: float = 120.0):
        t0 = time.time()
        while time.time() - t0 < timeout:
            try:
                if self.eval(expr):
                    return
            except RuntimeError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"timed out waiting for {expr}")


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    fixtures_dir = shared_fixtures()
    root = tmp_path_factory.mktemp("browser")
    models = build_models(root / "models")
    with launch(root / "comfy", fixtures_dir, models=models) as srv:
        port = _free_port()
        profile = root / "profile"
        proc = subprocess.Popen(
            [BROWSER, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--no-first-run", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
             f"--remote-debugging-port={port}", "--remote-allow-origins=*", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            t0, targets = time.time(), []
            while time.time() - t0 < 60 and not targets:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                        targets = [t for t in json.load(r) if t.get("type") == "page"]
                except OSError:
                    time.sleep(0.5)
            assert targets, "Chromium did not open a page target"
            pg = Page(targets[0]["webSocketDebuggerUrl"])
            pg.call("Page.enable")
            pg.call("Runtime.enable")
            srv.post("/settings/Comfy.TutorialCompleted", True)  # no template browser at first start
            pg.call("Page.navigate", url=srv.url("/"))
            pg.wait_for("!!(window.app && window.app.graph && window.app.extensions && window.LiteGraph)", 180)
            pg.wait_for("!!(window.LiteGraph.registered_node_types['Hallo_Sampler'])", 120)
            # record the frontend's missing-nodes / missing-models warnings, then let it show them
            pg.eval("""(() => { window.__missing = {nodes: [], models: []};
                const nodes = app.showMissingNodesError.bind(app), models = app.showMissingModelsError.bind(app);
                app.showMissingNodesError = (n, ...r) => {
                    window.__missing.nodes.push(...n.map(x => x.type || x)); return nodes(n, ...r); };
                app.showMissingModelsError = (m, ...r) => {
                    window.__missing.models.push(...m.map(x => x.directory + " / " + x.name)); return models(m, ...r); };
                return true; })()""")
            pg.models = models
            yield pg
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_web_extension_registered(page):
    assert page.eval("app.extensions.some(e => e.name === 'Hallo.SamplerStatus')") is True
    assert page.eval("window.__halloExtension && window.__halloExtension.registered") is True
    scripts = page.eval("performance.getEntriesByType('resource').map(r => r.name)"
                        ".filter(n => n.includes('/extensions/'))")
    assert any(s.endswith(f"/extensions/{PACK_NAME}/hallo.js") for s in scripts), scripts


DIALOGS = "Array.from(document.querySelectorAll('[role=dialog]')).map(d => d.innerText)"


def _template(page, stem: str) -> dict:
    """The workflow as the template browser fetches it (GET /workflow_templates lists it under the pack)."""
    return page.eval("import('/scripts/api.js').then(async ({api}) => {"
                     f" const mine = (await api.getWorkflowTemplates())[{json.dumps(PACK_NAME)}] || [];"
                     f" if (!mine.includes({json.dumps(stem)})) return null;"
                     f" const r = await fetch(api.apiURL('/workflow_templates/{PACK_NAME}/' + {json.dumps(stem)} + '.json'));"
                     " return r.ok ? r.json() : null; })")


def _load(page, data: dict) -> None:
    """Close any dialog, clear the records, load ``data`` as a user would (warnings enabled)."""
    for _ in range(3):
        if not page.eval(DIALOGS):
            break
        page.call("Input.dispatchKeyEvent", type="keyDown", key="Escape", code="Escape", windowsVirtualKeyCode=27)
        time.sleep(0.5)
    assert page.eval(DIALOGS) == [], "a dialog stayed open"
    page.eval("window.__missing.nodes.length = 0; window.__missing.models.length = 0; true")
    page.eval(f"app.loadGraphData({json.dumps(data)}).then(() => true)")
    time.sleep(1.0)  # the dialogs mount asynchronously after loadGraphData resolves


def test_templates_listed_with_readable_names(page):
    names = page.eval("import('/scripts/api.js').then(async ({api}) => (await api.getWorkflowTemplates())"
                      f"[{json.dumps(PACK_NAME)}])")
    assert sorted(names) == sorted(wf.EXAMPLES.values())


@pytest.mark.parametrize("name", NAMES)
def test_example_workflow_loads_without_warnings(page, name):
    data = _template(page, wf.EXAMPLES[name])
    assert data == json.loads(wf.example_path(name).read_text())
    _load(page, data)
    assert page.eval("window.__missing") == {"nodes": [], "models": []}
    assert page.eval(DIALOGS) == []
    types = page.eval("app.graph._nodes.map(n => n.type)")
    assert sorted(types) == sorted(n["type"] for n in data["nodes"])
    unknown = page.eval("app.graph._nodes.filter(n => !LiteGraph.registered_node_types[n.type]).map(n => n.type)")
    assert unknown == []
    # the frontend grows a node smaller than its widgets need; none had to grow, so the saved layout
    # (checked for overlaps by test_workflows_layout) is the drawn one
    drawn = dict(page.eval("app.graph._nodes.map(n => [n.id, Array.from(n.size)])"))
    saved = {n["id"]: n["size"] for n in data["nodes"]}
    assert {k: v for k, v in drawn.items() if v != saved[int(k)]} == {}
    assert page.eval("LiteGraph.NODE_TITLE_HEIGHT") == 30
    # the extension put its status panel on the sampler-type nodes
    samplers = {"Hallo_Sampler", "Hallo2_LongVideo", "Hallo2_TemporalUpscale"} & set(types)
    assert samplers
    with_panel = page.eval("app.graph._nodes.filter(n => n.__halloPanel).map(n => n.type)")
    assert samplers <= set(with_panel)


@pytest.mark.parametrize("name, missing", [("hallo2_long_video", "hallo/hallo2/net.pth"),
                                           ("hallo2_long_video_upscaled", "upscale_models/RealESRGAN_x2plus.pth")])
def test_missing_model_named_in_dialog(page, name, missing):
    path = page.models / missing
    hidden = path.with_name(path.name + ".away")
    path.rename(hidden)
    try:
        _load(page, json.loads(wf.example_path(name).read_text()))
        directory, file = missing.split("/", 1)
        assert page.eval("window.__missing") == {"nodes": [], "models": [f"{directory} / {file}"]}
        t0 = time.time()
        while not page.eval(DIALOGS) and time.time() - t0 < 10:
            time.sleep(0.5)
        dialogs = page.eval(DIALOGS)
        assert len(dialogs) == 1 and f"{directory} / {file}" in dialogs[0], dialogs
    finally:
        hidden.rename(path)
    _load(page, json.loads(wf.example_path(name).read_text()))  # back in place: no dialog again
    assert page.eval("window.__missing.models") == [] and page.eval(DIALOGS) == []


def test_status_panel_follows_progress_messages(page):
    data = json.loads(wf.example_path("hallo_portrait_to_video").read_text())
    _load(page, data)
    node_id = next(n["id"] for n in data["nodes"] if n["type"] == "Hallo_Sampler")
    send = ("import('/scripts/api.js').then(m => {{ m.api.dispatchCustomEvent('{ev}', {payload}); "
            "return app.graph.getNodeById(%d).__halloPanel.text.textContent; }})" % node_id)
    text = page.eval(send.format(ev="hallo.progress", payload=json.dumps(
        {"node": str(node_id), "clip": 2, "clips": 5, "step": 7, "steps": 40, "eta": 125.0})))
    assert text == "clip 2/5 · step 7/40 · 2m 5s left"
    text = page.eval(send.format(ev="hallo.clip", payload=json.dumps(
        {"node": str(node_id), "clip": 2, "clips": 5, "eta": 61.0, "filename": "clip_x.webp",
         "subfolder": "hallo", "type": "temp"})))
    assert text == "clip 2/5 done · 1m 1s left"
    src = page.eval("app.graph.getNodeById(%d).__halloPanel.img.src" % node_id)
    assert "/view?" in src and "filename=clip_x.webp" in src and "subfolder=hallo" in src
    # a cancelled long run names its partial file on the node
    text = page.eval(send.format(ev="hallo.run", payload=json.dumps(
        {"node": str(node_id), "state": "partial", "text": "Hallo2: cancelled. hallo2/long_ab.mp4 holds 16 of 63 "
         "frames (0.64 s); queue the same prompt again to continue at clip 2 of 4."})))
    assert text.startswith("cancelled. hallo2/long_ab.mp4 holds 16 of 63 frames (0.64 s)"), text
