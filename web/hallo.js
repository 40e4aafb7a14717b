// Hallo node pack: live status on the sampler nodes.
// The server sends "hallo.progress" {node, clip, clips, step, steps, eta} after every denoising step and
// "hallo.clip" {node, clip, clips, eta, filename, subfolder, type} when a clip is decoded (with an
// animated WebP of that clip in ComfyUI's temp folder). "hallo.run" {node, state, text, ...} says that a
// long-video run resumed its file, or stopped (Cancel, error) leaving a partial file: its name and length.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const SAMPLERS = new Set(["Hallo_Sampler", "Hallo2_LongVideo", "Hallo2_TemporalUpscale", "Hallo_AudioEmbeds"]);

function formatEta(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "estimating...";
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  return h > 0 ? `${h}h ${m}m left` : m > 0 ? `${m}m ${r}s left` : `${r}s left`;
}

function statusText(d) {
  const parts = [];
  if (d.clips > 1 || d.clip !== undefined) parts.push(`clip ${d.clip}/${d.clips}`);
  if (d.step !== undefined) parts.push(`step ${d.step}/${d.steps}`);
  parts.push(formatEta(d.eta));
  return parts.join(" · ");
}

function findNode(id) {
  const graph = app.graph;
  if (!graph || id === undefined || id === null) return null;
  const key = String(id).split(":").pop();
  return graph.getNodeById(Number(key)) ?? graph.getNodeById(key);
}

function panelFor(node) {
  if (node.__halloPanel) return node.__halloPanel;
  const root = document.createElement("div");
  root.className = "hallo-status";
  root.style.cssText = "display:flex;flex-direction:column;gap:4px;font:12px sans-serif;color:var(--input-text,#ddd);";
  const text = document.createElement("div");
  text.textContent = "idle";
  const img = document.createElement("img");
  img.style.cssText = "max-width:100%;max-height:256px;object-fit:contain;display:none;border-radius:4px;";
  img.alt = "latest finished clip";
  root.append(text, img);
  const panel = { root, text, img };
  if (typeof node.addDOMWidget === "function") {
    node.addDOMWidget("hallo_status", "hallo_status", root, { serialize: false, hideOnZoom: false });
  }
  node.__halloPanel = panel;
  return panel;
}

app.registerExtension({
  name: "Hallo.SamplerStatus",
  async setup() {
    window.__halloExtension = { registered: true, version: 1, events: 0 };
    api.addEventListener("hallo.progress", ({ detail }) => {
      window.__halloExtension.events += 1;
      const node = findNode(detail.node);
      if (!node) return;
      panelFor(node).text.textContent = statusText(detail);
      node.setDirtyCanvas?.(true, false);
    });
    api.addEventListener("hallo.clip", ({ detail }) => {
      window.__halloExtension.events += 1;
      const node = findNode(detail.node);
      if (!node) return;
      const panel = panelFor(node);
      panel.text.textContent = `clip ${detail.clip}/${detail.clips} done · ${formatEta(detail.eta)}`;
      if (detail.filename) {
        const q = new URLSearchParams({ filename: detail.filename, subfolder: detail.subfolder || "",
                                        type: detail.type || "temp", t: String(Date.now()) });
        panel.img.src = api.apiURL(`/view?${q}`);
        panel.img.style.display = "block";
      }
      node.setDirtyCanvas?.(true, true);
    });
    api.addEventListener("hallo.run", ({ detail }) => {
      window.__halloExtension.events += 1;
      const node = findNode(detail.node);
      if (!node || !detail.text) return;
      panelFor(node).text.textContent = detail.text.replace(/^Hallo2: /, "");
      node.setDirtyCanvas?.(true, false);
    });
    api.addEventListener("execution_start", () => {
      for (const node of app.graph?._nodes ?? []) {
        if (node.__halloPanel) node.__halloPanel.text.textContent = "queued";
      }
    });
  },
  async nodeCreated(node) {
    if (SAMPLERS.has(node.comfyClass)) panelFor(node);
  },
});
