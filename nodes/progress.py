"""Progress over clips x steps (samplers) or over a named task (other long nodes): ComfyUI's
ProgressBar (which also checks for Cancel) plus the "hallo.progress" / "hallo.clip" / "hallo.run"
websocket messages the web extension shows on the node."""

from __future__ import annotations

import logging
import os
import time
from typing import Optional

import torch

log = logging.getLogger("hallo")

EVENT_PROGRESS = "hallo.progress"
EVENT_CLIP = "hallo.clip"
EVENT_RUN = "hallo.run"  # a run's state worth telling the user: resumed, or stopped with a partial file


def _server():
    try:
        from server import PromptServer

        return PromptServer.instance
    except Exception:  # unit tests without a server
        return None


def _preview_tuple(frame: torch.Tensor):
    """[3, H, W] 0..1 -> ComfyUI's PreviewImageTuple ("JPEG", PIL image, max size)."""
    from PIL import Image

    arr = (frame.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return ("JPEG", Image.fromarray(arr), 512)


class ClipProgress:
    """Reports progress of a clip loop: ``total = clips * steps`` units on the node's ProgressBar."""

    def __init__(self, node_id: Optional[str], clips: int, steps: int, first_clip: int = 0):
        import comfy.utils

        self.node_id = str(node_id) if node_id is not None else None
        self.clips = max(1, int(clips))
        self.steps = max(1, int(steps))
        self.total = self.clips * self.steps
        self.pbar = comfy.utils.ProgressBar(self.total, node_id=self.node_id)
        self.start = time.monotonic()
        self.first_clip = first_clip  # resumed runs: ETA counts only the work done in this run
        self.clip = first_clip
        self.server = _server()
        self.pbar.update_absolute(first_clip * self.steps, self.total)

    def _send(self, event: str, data: dict) -> None:
        if self.server is None or self.node_id is None:
            return
        data = dict(data, node=self.node_id)
        try:
            self.server.send_sync(event, data, self.server.client_id)
        except Exception as e:  # a websocket hiccup must never kill a generation
            log.debug("hallo: could not send %s: %s", event, e)

    def eta(self, done_units: int) -> Optional[float]:
        run_units = done_units - self.first_clip * self.steps
        if run_units <= 0:
            return None
        rate = (time.monotonic() - self.start) / run_units
        return rate * (self.total - done_units)

    def step(self, clip: int, step: int) -> None:
        """``step`` (1-based) of ``clip`` (0-based) finished. Raises if the user cancelled."""
        self.clip = clip
        done = clip * self.steps + step
        self.pbar.update_absolute(done, self.total)
        self._send(EVENT_PROGRESS, {"clip": clip + 1, "clips": self.clips, "step": step, "steps": self.steps,
                                    "eta": self.eta(done)})

    def clip_done(self, clip: int, frames: torch.Tensor, fps: float) -> None:
        """Clip ``clip`` decoded: preview its last frame; save it as an animated WebP for the node."""
        done = (clip + 1) * self.steps
        self.pbar.update_absolute(done, self.total, _preview_tuple(frames[-1]))
        info = {"clip": clip + 1, "clips": self.clips, "eta": self.eta(done)}
        try:
            info.update(save_clip_preview(frames, fps, self.node_id or "x"))
        except Exception as e:
            log.debug("hallo: clip preview failed: %s", e)
        self._send(EVENT_CLIP, info)


class TaskProgress:
    """Progress of a node that is not a sampler: ``total`` units of one named task.

    The node's ProgressBar (which also checks Cancel) and a "hallo.progress" message with ``task``
    and ``done`` / ``total`` instead of clips and steps, so the panel says what the node does.
    """

    def __init__(self, node_id: Optional[str], task: str, total: int, unit: str = ""):
        import comfy.utils

        self.node_id = str(node_id) if node_id is not None else None
        self.task, self.unit = task, unit
        self.total = max(1, int(total))
        self.pbar = comfy.utils.ProgressBar(self.total, node_id=self.node_id)
        self.start = time.monotonic()
        self.server = _server()

    def update(self, done: int, total: Optional[int] = None, task: Optional[str] = None) -> None:
        if total is not None:
            self.total = max(1, int(total))
        if task is not None:
            self.task = task
        done = min(int(done), self.total)
        self.pbar.update_absolute(done, self.total)
        eta = None
        if done > 0:
            eta = (time.monotonic() - self.start) / done * (self.total - done)
        if self.server is None or self.node_id is None:
            return
        try:
            self.server.send_sync(EVENT_PROGRESS, {"node": self.node_id, "task": self.task, "done": done,
                                                   "total": self.total, "unit": self.unit, "eta": eta},
                                  self.server.client_id)
        except Exception as e:  # a websocket hiccup must never kill a run
            log.debug("hallo: could not send %s: %s", EVENT_PROGRESS, e)


def notify(node_id: Optional[str], text: str, warn: bool = False, **info) -> None:
    """Tell the user about a run where they look: the node (web extension panel and ComfyUI's own
    node text) and the server log.

    Sent while the node still runs or fails: a node's ``ui`` output is only delivered when it
    returns, so a Cancel (an exception) could not report through it.
    """
    log.log(logging.WARNING if warn else logging.INFO, "%s", text)
    server = _server()
    if server is None or node_id is None:
        return
    try:
        server.send_sync(EVENT_RUN, dict(info, node=str(node_id), text=text), server.client_id)
        server.send_progress_text(text, str(node_id), server.client_id)
    except Exception as e:  # a websocket hiccup must never hide the original error
        log.debug("hallo: could not send %s: %s", EVENT_RUN, e)


def save_clip_preview(frames: torch.Tensor, fps: float, node_id: str) -> dict:
    """Write [T, 3, H, W] 0..1 frames as a small animated WebP in ComfyUI's temp folder."""
    import folder_paths
    from PIL import Image

    frames = frames.detach().float().cpu().clamp(0, 1)
    h, w = frames.shape[-2:]
    scale = min(1.0, 256.0 / max(h, w))
    imgs = []
    for f in frames:
        img = Image.fromarray((f * 255).round().to(torch.uint8).permute(1, 2, 0).numpy())
        if scale < 1.0:
            img = img.resize((max(1, int(w * scale)), max(1, int(h * scale))), Image.BILINEAR)
        imgs.append(img)
    folder = os.path.join(folder_paths.get_temp_directory(), "hallo")
    os.makedirs(folder, exist_ok=True)
    name = f"clip_{node_id}_{int(time.time() * 1000) % 10**9}.webp"
    imgs[0].save(os.path.join(folder, name), save_all=True, append_images=imgs[1:],
                 duration=int(1000 / max(1.0, float(fps))), loop=0, quality=70)
    return {"filename": name, "subfolder": "hallo", "type": "temp"}


def frame_progress(node_id: Optional[str], total: int):
    """``progress(done, total)`` for a frame loop of the engine: at most about 200 updates of the node's bar
    (an hour of frames would otherwise send 90000 websocket messages)."""
    prog = ClipProgress(node_id, clips=1, steps=max(1, int(total)))
    every = max(1, int(total) // 200)

    def progress(done: int, _total=None) -> None:
        if done % every == 0 or done == total:
            prog.step(0, min(done, prog.steps))

    return progress
