// Hallo node pack: live status on the nodes that run long (samplers, upscaler, audio embeds).
// The server sends "hallo.progress" after every denoising step {node, clip, clips, step, steps, eta} or,
// for a node that is not a sampler, {node, task, done, total, eta}; "hallo.clip" {node, clip, clips, eta,
// filename, subfolder, type} when a clip is decoded (an animated WebP of it in ComfyUI's temp folder);
// "hallo.run" {node, state, text, ...} when a long-video run resumed its file, or stopped (Cancel, error)
// leaving a partial file. ComfyUI's own execution messages move every panel from "queued" to running,
// done, cached, cancelled or error, so no panel keeps an old state after a run ends.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const SAMPLERS = new Set(["Hallo_Sampler", "Hallo2_LongVideo", "Hallo2_TemporalUpscale", "Hallo_AudioEmbeds"]);
const TEXT_HEIGHT = 20;     // one line of status text
const PREVIEW_HEIGHT = 160; // room the panel asks for once it shows a clip preview

function formatEta(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "estimating...";
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  return h > 0 ? `${h}h ${m}m left` : m > 0 ? `${m}m ${r}s left` : `${r}s left`;
}

function statusText(d) {
  const parts = [];
  if (d.task !== undefined) {
    parts.push(d.total > 1 ? `${d.task} · ${d.done}/${d.total}${d.unit ? " " + d.unit + "s" : ""}` : d.task);
  } else {
    if (d.clips > 1 || d.clip !== undefined) parts.push(`clip ${d.clip}/${d.clips}`);
    if (d.step !== undefined) parts.push(`step ${d.step}/${d.steps}`);
  }
  parts.push(formatEta(d.eta));
  return parts.join(" · ");
}

function nodeKey(id) {
  return id === undefined || id === null ? null : String(id).split(":").pop();
}

function findNode(id) {
  const graph = app.graph;
  const key = nodeKey(id);
  if (!graph || key === null) return null;
  return graph.getNodeById(Number(key)) ?? graph.getNodeById(key);
}

function panels() {
  return (app.graph?._nodes ?? app.graph?.nodes ?? []).filter((n) => n.__halloPanel).map((n) => n.__halloPanel);
}

function panelFor(node) {
  if (node.__halloPanel) return node.__halloPanel;
  const root = document.createElement("div");
  root.className = "hallo-status";
  // the panel never draws outside the widget area the node gives it: the preview shrinks to fit
  root.style.cssText = "display:flex;flex-direction:column;gap:4px;font:12px sans-serif;color:var(--input-text,#ddd);"
    + "width:100%;height:100%;max-height:100%;overflow:hidden;box-sizing:border-box;";
  const text = document.createElement("div");
  text.textContent = "idle";
  text.style.cssText = "flex:0 0 auto;white-space:nowrap;overflow:hidden;text-overflow:ellipsis;";
  const img = document.createElement("img");
  img.style.cssText = "flex:1 1 auto;min-height:0;max-width:100%;max-height:100%;object-fit:contain;"
    + "display:none;border-radius:4px;align-self:center;";
  img.alt = "latest finished clip";
  root.append(text, img);
  const panel = { root, text, img, node, state: "idle" };
  img.addEventListener("load", () => fitPreview(panel));
  if (typeof node.addDOMWidget === "function") {
    panel.widget = node.addDOMWidget("hallo_status", "hallo_status", root, {
      serialize: false,
      hideOnZoom: false,
      getMinHeight: () => TEXT_HEIGHT + (img.style.display === "none" ? 0 : PREVIEW_HEIGHT),
    });
  }
  node.__halloPanel = panel;
  return panel;
}

function fitPreview(panel) {
  // grow the node (never shrink it) so the preview's room is inside the node's own outline
  const node = panel.node;
  if (typeof node.computeSize === "function" && typeof node.setSize === "function") {
    const need = node.computeSize();
    if (need[1] > node.size[1]) node.setSize([Math.max(node.size[0], need[0]), need[1]]);
  }
  node.setDirtyCanvas?.(true, true);
}

function setState(panel, state, text) {
  panel.state = state;
  panel.text.textContent = text;
  panel.node.setDirtyCanvas?.(true, false);
}

function firstLine(s) {
  return String(s ?? "").split("\n")[0].replace(/^Hallo2?: /, "");
}

app.registerExtension({
  name: "Hallo.SamplerStatus",
  async setup() {
    window.__halloExtension = { registered: true, version: 2, events: 0 };
    const count = () => { window.__halloExtension.events += 1; };
    api.addEventListener("hallo.progress", ({ detail }) => {
      count();
      const node = findNode(detail.node);
      if (node) setState(panelFor(node), "running", statusText(detail));
    });
    api.addEventListener("hallo.clip", ({ detail }) => {
      count();
      const node = findNode(detail.node);
      if (!node) return;
      const panel = panelFor(node);
      setState(panel, "running", `clip ${detail.clip}/${detail.clips} done · ${formatEta(detail.eta)}`);
      if (detail.filename) {
        const q = new URLSearchParams({ filename: detail.filename, subfolder: detail.subfolder || "",
                                        type: detail.type || "temp", t: String(Date.now()) });
        panel.img.style.display = "block";
        panel.img.src = api.apiURL(`/view?${q}`);
      }
    });
    api.addEventListener("hallo.run", ({ detail }) => {
      count();
      const node = findNode(detail.node);
      if (node && detail.text) setState(panelFor(node), detail.state || "running", firstLine(detail.text));
    });
    // ComfyUI's own run lifecycle
    api.addEventListener("execution_start", () => {
      for (const p of panels()) setState(p, "queued", "queued");
    });
    api.addEventListener("executing", ({ detail }) => {
      // one node at a time: a panel still running when another node starts (or the prompt ends) is done
      const id = nodeKey(detail && typeof detail === "object" ? (detail.display_node ?? detail.node) : detail);
      for (const p of panels()) {
        const mine = id !== null && nodeKey(p.node.id) === id;
        if (mine && p.state === "queued") setState(p, "running", "running");
        else if (!mine && p.state === "running") setState(p, "done", "done");
      }
    });
    api.addEventListener("execution_cached", ({ detail }) => {
      for (const id of detail?.nodes ?? []) {
        const p = findNode(id)?.__halloPanel;
        if (p) setState(p, "cached", "done (inputs unchanged: cached result)");
      }
    });
    api.addEventListener("execution_error", ({ detail }) => {
      const failed = nodeKey(detail?.node_id);
      for (const p of panels()) {
        // a long-video run that stopped already named its partial file (state "partial"): keep that
        if (nodeKey(p.node.id) === failed && p.state !== "partial") setState(p, "error", `error: ${firstLine(detail.exception_message)}`);
        else if (p.state === "queued" || p.state === "running") setState(p, "stopped", "not run: another node failed");
      }
    });
    api.addEventListener("execution_interrupted", () => {
      for (const p of panels()) {
        if (p.state === "running") setState(p, "cancelled", "cancelled");
        else if (p.state === "queued") setState(p, "idle", "idle");
      }
    });
    api.addEventListener("execution_success", () => {
      for (const p of panels()) {
        if (p.state === "running") setState(p, "done", "done");
        else if (p.state === "queued") setState(p, "idle", "idle");
      }
    });
  },
  async nodeCreated(node) {
    if (SAMPLERS.has(node.comfyClass)) panelFor(node);
  },
});
