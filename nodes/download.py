"""Explicit download of the official weights (huggingface_hub). Never runs unless the user queues it
with ``download`` switched on; importing the pack downloads nothing."""

from __future__ import annotations

import os

from comfy_api.latest import io, ui

from hallo_core.assets import layout as md
from hallo_core.assets.download import download as fetch_files

from . import common as C

# Bundles of hallo_core.assets.layout, which names the exact files and the repo of each.
CHOICES = {
    "hallo (portrait video)": ["hallo"],
    "hallo2 (long video)": ["hallo2"],
    "hallo2 + temporal upscaler": ["hallo2", "hallo2-4k"],
    "everything": ["hallo", "hallo2", "hallo2-4k"],
}


def files_for(choice: str) -> list[tuple[str, str]]:
    """(repo, path) pairs; paths under the HF repos = paths under models/hallo."""
    return md.files_to_fetch(CHOICES[choice])


def missing_files(files: list[tuple[str, str]], roots: list[str]) -> list[tuple[str, str]]:
    return [(repo, f) for repo, f in files if not any(os.path.isfile(os.path.join(r, f)) for r in roots)]


class HalloDownloadModels(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="Hallo_DownloadModels",
            display_name="Hallo Download Models",
            category=f"{C.CATEGORY}/loaders",
            description=f"Lists which official files are missing under models/hallo and, when 'download' is on, "
                        f"fetches them from {md.repo_url(md.HALLO2_REPO)} ({md.rel_path('hallo')} from "
                        f"{md.repo_url(md.HALLO_REPO)}) "
                        "with huggingface_hub (several GB). "
                        "Afterwards, refresh the page (R) so the loaders list the new files.",
            inputs=[
                io.Combo.Input("models", options=list(CHOICES), default="hallo2 (long video)",
                               tooltip="Which set of official files to check / download."),
                io.Boolean.Input("download", default=False,
                                 tooltip="Off: only report what is missing. On: download the missing files into "
                                         "the first models/hallo folder."),
            ],
            outputs=[io.String.Output(display_name="report", tooltip="What was found, missing or downloaded.")],
            is_output_node=True,
            not_idempotent=True,
        )

    @classmethod
    def execute(cls, models, download) -> io.NodeOutput:
        roots = C.model_roots()
        files = files_for(models)
        todo = missing_files(files, roots)
        lines = [f"models/hallo folders: {', '.join(roots)}", f"{len(files) - len(todo)} of {len(files)} present"]
        if todo and download:
            import comfy.utils

            target = roots[0]
            os.makedirs(target, exist_ok=True)
            pbar = comfy.utils.ProgressBar(len(todo))
            for i, (repo, f) in enumerate(todo):
                C.interrupted()
                fetch_files(target, files=[(repo, f)])
                pbar.update_absolute(i + 1, len(todo))
                lines.append(f"downloaded {f}")
        else:
            lines += [f"missing: {f} ({md.repo_url(repo)})" for repo, f in todo]
            if todo:
                lines.append("switch 'download' on and queue again to fetch them")
        # the install check (files, tensor names, the Python side, a tiny self-test), as it runs here
        lines.append(f"check the install: {C.cli_command('doctor', '--models', roots[0])}")
        text = "\n".join(lines)
        return io.NodeOutput(text, ui=ui.PreviewText(text))


NODES = [HalloDownloadModels]
