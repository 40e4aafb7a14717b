"""The ComfyUI frontend (headless Chromium) loads every example workflow, fetched the way its template
browser fetches it, with a complete tiny models folder: no missing-nodes and no missing-models dialog, and
no node grown past its saved size (so the static layout test sees what is drawn). With a model file
removed, the dialog names that file. The pack's web extension registers.

What the pack adds, asserted in whichever frontend the server ships (1.35 with ComfyUI 0.8.0, 1.41 with
0.17.2, or the newest comfyui-frontend-package installed next to it), on the classic canvas and, where
the frontend has it, on the "Nodes 2.0" (Vue) canvas: the status panel and its reset on error, cancel
and success, clip previews that stay inside their node, the template category named by the pack's
locales, the node help pages, and, with an empty models folder, one error that lists every missing file.

Skipped unless COMFYUI_PATH is set (see test_comfyui_integration.py) and a Chromium binary is found
(``chromium`` / ``chromium-browser`` / ``google-chrome`` on PATH, or CHROMIUM=<path>). The browser is driven
through the DevTools protocol over its websocket (websocket-client).
"""

from __future__ import annotations

import itertools
import json
import os
import re
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
            # a desktop-sized window: narrower ones hide the template browser's category list
            pg.call("Emulation.setDeviceMetricsOverride", width=1600, height=1000, deviceScaleFactor=1, mobile=False)
            srv.post("/settings/Comfy.TutorialCompleted", True)  # no template browser at first start
            pg.call("Page.navigate", url=srv.url("/"))
            pg.wait_for("!!(window.app && window.app.graph && window.app.extensions && window.LiteGraph)", 180)
            pg.wait_for("!!(window.LiteGraph.registered_node_types['Hallo_Sampler'])", 120)
            # record the frontend's missing-nodes / missing-models warnings, then let it show them. Frontends
            # up to 1.4x announce them through app.showMissing*Error (a dialog); newer ones keep them in a
            # store and show an overlay and an Issues tab (read through _missing)
            pg.eval("""(() => { window.__missing = {nodes: [], models: []};
                if (app.showMissingNodesError) { const nodes = app.showMissingNodesError.bind(app);
                    app.showMissingNodesError = (n, ...r) => {
                        window.__missing.nodes.push(...n.map(x => x.type || x)); return nodes(n, ...r); }; }
                if (app.showMissingModelsError) { const models = app.showMissingModelsError.bind(app);
                    app.showMissingModelsError = (m, ...r) => {
                        window.__missing.models.push(...m.map(x => x.directory + " / " + x.name)); return models(m, ...r); }; }
                return true; })()""")
            pg.models = models
            pg.server = srv
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
# newer frontends: the missing-model and missing-node stores (pinia) behind the Issues tab
STORES = "Array.from(document.querySelectorAll('*')).find(e => e.__vue_app__).__vue_app__.config.globalProperties.$pinia._s"


def _style(page) -> str:
    """How this frontend reports missing models when a workflow loads: "hook" (1.35: through
    app.showMissingModelsError, a dialog), "dialog" (1.41: its missing-models dialog directly) or "store"
    (1.5x: a store behind an overlay and the Issues tab)."""
    if page.eval("typeof app.showMissingModelsError === 'function'"):
        return "hook"
    return "store" if page.eval(f"{STORES}.has('missingModel')") else "dialog"


def _missing(page, models: int = 0) -> dict:
    """The missing nodes and models the frontend reported for the loaded workflow (waiting, for the
    styles that verify asynchronously, until it reported ``models`` of them)."""
    style = _style(page)
    if style == "hook":
        return page.eval("window.__missing")
    t0 = time.time()
    while True:
        time.sleep(1.0)
        if style == "store":
            found = page.eval(f"""(() => (({STORES}).get('missingModel').missingModelCandidates || [])
                .filter(c => c.isMissing).map(c => c.directory + " / " + c.name))()""")
        else:  # the missing-models dialog lists each file, then its folder in capitals
            found = []
            for t in page.eval(DIALOGS):
                if "missing models" not in t:
                    continue
                lines = [ln.strip() for ln in t.splitlines() if ln.strip()]
                found += [f"{lines[i + 1].lower()} / {lines[i]}" for i in range(len(lines) - 1)
                          if re.fullmatch(r"[A-Z0-9_]+", lines[i + 1]) and re.search(r"\.\w+$", lines[i])]
        if len(found) >= models or time.time() - t0 > 30:
            return {"nodes": page.eval("window.__missing.nodes.slice()"), "models": found}


def _template(page, stem: str) -> dict:
    """The workflow as the template browser fetches it (GET /workflow_templates lists it under the pack)."""
    return page.eval("import('/scripts/api.js').then(async ({api}) => {"
                     f" const mine = (await api.getWorkflowTemplates())[{json.dumps(PACK_NAME)}] || [];"
                     f" if (!mine.includes({json.dumps(stem)})) return null;"
                     f" const r = await fetch(api.apiURL('/workflow_templates/{PACK_NAME}/' + {json.dumps(stem)} + '.json'));"
                     " return r.ok ? r.json() : null; })")


def _close_dialogs(page) -> None:
    """Close open dialogs as a user would (Escape), then through the frontend's dialog store (the template
    browser of 1.35 ignores Escape)."""
    for _ in range(3):
        if not page.eval(DIALOGS):
            return
        page.call("Input.dispatchKeyEvent", type="keyDown", key="Escape", code="Escape", windowsVirtualKeyCode=27)
        time.sleep(0.5)
    page.eval(f"""(() => {{ const d = {STORES}.get('dialog');
        for (let i = 0; i < 5 && d.dialogStack.length; i++) d.closeDialog(); return true; }})()""")
    time.sleep(0.5)


def _load(page, data: dict) -> None:
    """Close any dialog, clear the records, load ``data`` as a user would (warnings enabled)."""
    _close_dialogs(page)
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
    assert _missing(page) == {"nodes": [], "models": []}
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


def _refresh(page) -> None:
    """What a user does after adding or removing model files (R): the frontend lists the folders again."""
    page.eval("(async () => { const c = app.extensionManager?.command;"
              " if (c && c.commands.some(x => x.id === 'Comfy.RefreshNodeDefinitions'))"
              " await c.execute('Comfy.RefreshNodeDefinitions'); return true; })()")
    time.sleep(1.0)


@pytest.mark.parametrize("name, missing", [("hallo2_long_video", "hallo/hallo2/net.pth"),
                                           ("hallo2_long_video_upscaled", "upscale_models/RealESRGAN_x2plus.pth")])
def test_missing_model_named_in_dialog(page, name, missing):
    style = _style(page)
    path = page.models / missing
    hidden = path.with_name(path.name + ".away")
    path.rename(hidden)
    try:
        _refresh(page)
        _load(page, json.loads(wf.example_path(name).read_text()))
        directory, file = missing.split("/", 1)
        got = _missing(page, models=1)
        if style == "store" and not got["models"] and directory == "hallo":
            pytest.skip("this frontend checks a workflow's models only on node types it maps to a model folder "
                        "(core loaders): a missing file of the hallo folder is reported when the prompt runs "
                        "(test_empty_models_folder_gives_one_error_listing_every_missing_file)")
        assert got == {"nodes": [], "models": [f"{directory} / {file}"]}
        if style != "store":
            t0 = time.time()
            while not page.eval(DIALOGS) and time.time() - t0 < 10:
                time.sleep(0.5)
            dialogs = page.eval(DIALOGS)
            shown = f"{directory} / {file}" if style == "hook" else f"{file}\n{directory.upper()}"
            assert len(dialogs) == 1 and shown in dialogs[0], dialogs
        else:  # an overlay naming the file, with the Issues tab behind it
            page.wait_for(f"document.body.innerText.includes({json.dumps(file + ' is missing')})", 30)
    finally:
        hidden.rename(path)
        _refresh(page)
    _load(page, json.loads(wf.example_path(name).read_text()))  # back in place: no warning again
    assert _missing(page)["models"] == [] and page.eval(DIALOGS) == []


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


def _node_rect(page, node_id: int) -> dict:
    """The node's outline in page pixels: its DOM element on the Vue canvas, else its LiteGraph box."""
    return page.eval("""(() => { const n = app.graph.getNodeById(%d);
        const el = document.querySelector('[data-node-id="' + n.id + '"]');
        if (el) { const b = el.getBoundingClientRect(); return {left: b.left, top: b.top, right: b.right, bottom: b.bottom}; }
        const c = app.canvas.canvas.getBoundingClientRect(), ds = app.canvas.ds, th = LiteGraph.NODE_TITLE_HEIGHT;
        return {left: c.left + (n.pos[0] + ds.offset[0]) * ds.scale, top: c.top + (n.pos[1] - th + ds.offset[1]) * ds.scale,
                right: c.left + (n.pos[0] + n.size[0] + ds.offset[0]) * ds.scale,
                bottom: c.top + (n.pos[1] + n.size[1] + ds.offset[1]) * ds.scale}; })()""" % node_id)


def _rect(page, expr: str) -> dict:
    return page.eval("(() => { const b = (%s).getBoundingClientRect(); "
                     "return {left: b.left, top: b.top, right: b.right, bottom: b.bottom}; })()" % expr)


def _vue_canvas(page, on: bool) -> bool:
    """Switch the "Nodes 2.0" canvas on or off; False when this frontend has no such setting."""
    has = page.eval("(() => { try { return app.extensionManager?.setting?.get('Comfy.VueNodes.Enabled') !== undefined; }"
                    " catch (e) { return false; } })()")
    if not has:
        return False
    page.eval(f"app.extensionManager.setting.set('Comfy.VueNodes.Enabled', {json.dumps(on)}).then(() => true)")
    time.sleep(2.0)
    return True


def _send(page, event: str, payload) -> None:
    page.eval(f"import('/scripts/api.js').then(m => {{ m.api.dispatchCustomEvent({json.dumps(event)}, "
              f"{json.dumps(payload)}); return true; }})")


# the fields ComfyUI's execution_error message carries besides the node and the message
ERROR = {"exception_type": "RuntimeError", "traceback": [], "current_inputs": {}, "current_outputs": {},
         "executed": [], "timestamp": 0}


def test_status_panels_reset_on_error_cancel_and_success(page):
    data = json.loads(wf.example_path("hallo_portrait_to_video").read_text())
    _load(page, data)
    sampler = next(n["id"] for n in data["nodes"] if n["type"] == "Hallo_Sampler")
    audio = next(n["id"] for n in data["nodes"] if n["type"] == "Hallo_AudioEmbeds")
    texts = lambda: dict(page.eval("app.graph._nodes.filter(n => n.__halloPanel)"  # noqa: E731
                                   ".map(n => [String(n.id), n.__halloPanel.text.textContent])"))

    # the audio node says what it does (no sampler's "step 100/100")
    _send(page, "execution_start", {"prompt_id": "p1"})
    assert set(texts().values()) == {"queued"}
    _send(page, "executing", str(audio))
    _send(page, "hallo.progress", {"node": str(audio), "task": "encoding the audio (wav2vec2)", "done": 1,
                                   "total": 2, "unit": "part", "eta": 4.0})
    assert texts()[str(audio)] == "encoding the audio (wav2vec2) · 1/2 parts · 4s left"
    _send(page, "executing", str(sampler))
    assert texts()[str(audio)] == "done"
    _send(page, "hallo.progress", {"node": str(sampler), "clip": 1, "clips": 2, "step": 3, "steps": 4, "eta": 9.0})
    # cancel: the running node says so, and nothing stays "queued"
    _send(page, "execution_interrupted", {"prompt_id": "p1", "node_id": str(sampler)})
    assert texts() == {str(audio): "done", str(sampler): "cancelled"}
    # error in another node: the waiting panels say they did not run
    _send(page, "execution_start", {"prompt_id": "p2"})
    _send(page, "execution_error", dict(ERROR, prompt_id="p2", node_id="6", node_type="Hallo_FaceModelLoader",
                                        exception_message="Hallo: 8 model files are missing\n  ..."))
    assert set(texts().values()) == {"not run: another node failed"}
    # error in the node itself: its first line
    _send(page, "execution_start", {"prompt_id": "p3"})
    _send(page, "executing", str(sampler))
    _send(page, "execution_error", dict(ERROR, prompt_id="p3", node_id=str(sampler), node_type="Hallo_Sampler",
                                        exception_message="Hallo: out of memory\ndetails"))
    assert texts()[str(sampler)] == "error: out of memory"
    # success: a node that ran is done; one that had nothing to do (cached) says so
    _send(page, "execution_start", {"prompt_id": "p4"})
    _send(page, "execution_cached", {"prompt_id": "p4", "nodes": [str(audio)]})
    _send(page, "executing", str(sampler))
    _send(page, "hallo.progress", {"node": str(sampler), "clip": 2, "clips": 2, "step": 4, "steps": 4, "eta": 0.0})
    _send(page, "executing", None)
    _send(page, "execution_success", {"prompt_id": "p4"})
    assert texts() == {str(audio): "done (inputs unchanged: cached result)", str(sampler): "done"}


@pytest.mark.parametrize("vue", [False, True], ids=["classic canvas", "nodes 2.0 canvas"])
def test_clip_preview_stays_inside_its_node(page, vue):
    import numpy as np
    from PIL import Image

    if vue and not _vue_canvas(page, True):
        pytest.skip("this frontend has no Nodes 2.0 canvas setting")
    try:
        data = json.loads(wf.example_path("hallo_portrait_to_video").read_text())
        _load(page, data)
        node_id = next(n["id"] for n in data["nodes"] if n["type"] == "Hallo_Sampler")
        # a 256 px clip preview where ComfyUI serves temp files from (--temp-directory X serves X/temp)
        temp = page.server.root / "temp" / "temp" / "hallo"
        temp.mkdir(parents=True, exist_ok=True)
        Image.fromarray((np.random.default_rng(0).random((256, 256, 3)) * 255).astype("uint8")).save(temp / "clip_t.webp")
        page.eval("(() => { const n = app.graph.getNodeById(%d); app.canvas.ds.scale = 1;"
                  " app.canvas.ds.offset = [60 - n.pos[0], 80 - n.pos[1]]; app.canvas.setDirty(true, true); return true; })()"
                  % node_id)
        _send(page, "hallo.clip", {"node": str(node_id), "clip": 1, "clips": 2, "eta": 3.0, "filename": "clip_t.webp",
                                   "subfolder": "hallo", "type": "temp"})
        page.wait_for("app.graph.getNodeById(%d).__halloPanel.img.naturalWidth === 256" % node_id, 30)
        time.sleep(1.0)  # the canvas redraws and places the DOM widget
        node = _node_rect(page, node_id)
        img = _rect(page, "app.graph.getNodeById(%d).__halloPanel.img" % node_id)
        assert img["bottom"] - img["top"] > 64, img  # the preview is shown, not squeezed away
        for side in ("left", "top"):
            assert img[side] >= node[side] - 0.5, (side, img, node)
        for side in ("right", "bottom"):
            assert img[side] <= node[side] + 0.5, (side, img, node)
        if vue:  # the panel lives in the node's own element
            assert page.eval("document.querySelector('[data-node-id=\"%d\"]').contains("
                             "app.graph.getNodeById(%d).__halloPanel.root)" % (node_id, node_id))
    finally:
        if vue:
            _vue_canvas(page, False)


def test_template_category_is_named_by_the_pack(page):
    """The frontend names a custom node's template category after its folder unless the pack's locales
    give a title; the pack's locales/en/main.json titles the documented install folder."""
    assert PACK_NAME == "hallo-talking-head", "the ComfyUI under test has its own hallo-talking-head folder"
    i18n = page.eval("fetch('/i18n').then(r => r.json())")
    assert i18n["en"]["templateWorkflows"]["category"][PACK_NAME] == "Hallo talking portraits"
    page.eval("app.extensionManager.command.execute('Comfy.BrowseTemplates').then(() => true)")
    try:
        page.wait_for("document.body.innerText.includes('Hallo talking portraits')", 60)
        assert f"\n{PACK_NAME}\n" not in page.eval("document.body.innerText")
    finally:
        _close_dialogs(page)


def test_node_help_page_is_shown(page):
    """The frontend fetches custom node help from /extensions/<pack>/docs/<node>.md (text/markdown); the
    selected node's Info panel (frontends that have one) shows it."""
    md = (REPO / "web" / "docs" / "Hallo_Sampler.md").read_text()
    line = next(ln for ln in md.splitlines()[1:] if ln.strip())
    module = page.eval("fetch('/api/object_info/Hallo_Sampler').then(r => r.json()).then(d => d.Hallo_Sampler.python_module)")
    assert module == f"custom_nodes.{PACK_NAME}"
    got = page.eval("fetch('/extensions/%s/docs/Hallo_Sampler.md').then(async r => [r.status, "
                    "r.headers.get('content-type'), await r.text()])" % PACK_NAME)
    assert got[0] == 200 and got[1].startswith("text/markdown") and got[2] == md
    data = json.loads(wf.example_path("hallo_portrait_to_video").read_text())
    _load(page, data)
    node_id = next(n["id"] for n in data["nodes"] if n["type"] == "Hallo_Sampler")
    page.eval("(() => { app.canvas.selectNode(app.graph.getNodeById(%d)); app.canvas.setDirty(true, true); return true; })()"
              % node_id)
    time.sleep(1.5)
    if not page.eval("!!document.querySelector('[data-testid=info-button]')"):
        pytest.skip("this frontend has no Node Info button on a selected node (help shows in the node library)")
    page.eval("(() => { document.querySelector('[data-testid=info-button]').click(); return true; })()")
    page.wait_for("document.body.innerText.includes(%s)" % json.dumps(line.strip()[:60]), 30)


def test_empty_models_folder_gives_one_error_listing_every_missing_file(page):
    """First run: the portrait workflow queued from the frontend with no models: it passes validation (no
    "Value not in list"), and its first loader stops the run with one message naming every file and its
    download link, which the user sees in the frontend."""
    hallo = page.models / "hallo"
    away = hallo.with_name("hallo.empty-test")
    hallo.rename(away)
    hallo.mkdir()
    try:
        _load(page, json.loads(wf.example_path("hallo_portrait_to_video").read_text()))
        _close_dialogs(page)  # the frontend's own missing-models notice at load time, if it shows one
        page.eval("(async () => { window.__errors = []; const {api} = await import('/scripts/api.js');"
                  " if (!window.__errorsHooked) { api.addEventListener('execution_error', e => window.__errors.push(e.detail));"
                  " window.__errorsHooked = true; } return true; })()")
        page.eval("app.queuePrompt(0, 1).then(() => true)")
        page.wait_for("window.__errors.length > 0", 240)
        errors = page.eval("window.__errors.map(e => [e.node_type, e.exception_message])")
        assert len(errors) == 1, errors
        expected = ["hallo/net.pth", "sd-vae-ft-mse/config.json", "sd-vae-ft-mse/diffusion_pytorch_model.safetensors",
                    "wav2vec/wav2vec2-base-960h/config.json", "wav2vec/wav2vec2-base-960h/preprocessor_config.json",
                    "wav2vec/wav2vec2-base-960h/model.safetensors", "face_analysis/models/scrfd_10g_bnkps.onnx",
                    "face_analysis/models/glintr100.onnx"]
        message = errors[0][1]
        assert f"{len(expected)} model files are missing" in message, message
        for rel in expected:
            assert f"{rel}  <-  https://huggingface.co/fudan-generative-ai/hallo/resolve/main/{rel}" in message
        assert "Hallo Download Models" in message and "-m hallo_core doctor --models" in message
        # what the user sees: the frontend's error dialog, or its error panel's details
        seen = lambda: page.eval("document.body.innerText")  # noqa: E731
        t0 = time.time()
        while "model files are missing" not in seen() and time.time() - t0 < 30:
            page.eval("(() => { const b = Array.from(document.querySelectorAll('button, a, span'))"
                      ".find(e => /^(View details|Show Report|Details)$/i.test((e.innerText || '').trim()));"
                      " if (b) b.click(); return true; })()")
            time.sleep(1.0)
        text = seen()
        assert "model files are missing" in text
        for rel in expected:
            assert rel in text
        assert "Value not in list" not in text
        # and the status panels do not stay on "queued"
        panels = page.eval("app.graph._nodes.filter(n => n.__halloPanel).map(n => n.__halloPanel.text.textContent)")
        assert panels and set(panels) == {"not run: another node failed"}, panels
    finally:
        hallo.rmdir()
        away.rename(hallo)
        _close_dialogs(page)
