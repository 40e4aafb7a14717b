"""Explicit download of the official weights (huggingface_hub). Never runs unless the user queues it
with ``download`` switched on; importing the pack downloads nothing."""

from __future__ import annotations

import os

from comfy_api.latest import io, ui

from hallo_core.assets import layout as md
from hallo_core.assets.download import download as fetch_files, download_file

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


def folder_roots(folder: str) -> list[str]:
    """Every folder ComfyUI registers under ``folder`` (models/hallo, models/upscale_models)."""
    import folder_paths

    if folder == md.COMFY_HALLO_FOLDER:
        return C.model_roots()
    try:
        return folder_paths.get_folder_paths(folder)
    except KeyError:
        return [os.path.join(folder_paths.models_dir, folder)]


def missing_files(files: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The files of ``files`` found in none of the folders ComfyUI reads them from."""
    def present(f):
        folder, name = md.comfy_place(f)
        return any(os.path.isfile(os.path.join(r, name)) for r in folder_roots(folder))

    return [(repo, f) for repo, f in files if not present(f)]


def _shown(f: str) -> str:
    folder, name = md.comfy_place(f)
    return f if folder == md.COMFY_HALLO_FOLDER else f"{name} in models/{folder}"


class HalloDownloadModels(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="Hallo_DownloadModels",
            display_name="Hallo Download Models",
            category=f"{C.CATEGORY}/loaders",
            description=f"Lists which official files are missing under models/hallo (RealESRGAN: "
                        f"models/upscale_models, where core's Load Upscale Model reads it) and, when 'download' "
                        f"is on, fetches them with huggingface_hub (several GB): Hallo2's own weights from "
                        f"{md.repo_url(md.HALLO2_REPO)}, everything else from {md.repo_url(md.HALLO_REPO)}. "
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
        todo = missing_files(files)
        lines = [f"models/hallo folders: {', '.join(roots)}", f"{len(files) - len(todo)} of {len(files)} present"]
        if todo and download:
            import comfy.utils

            os.makedirs(roots[0], exist_ok=True)
            pbar = comfy.utils.ProgressBar(len(todo))
            for i, (repo, f) in enumerate(todo):
                C.interrupted()
                folder, name = md.comfy_place(f)
                if folder == md.COMFY_HALLO_FOLDER:
                    fetch_files(roots[0], files=[(repo, f)])
                    lines.append(f"downloaded {f}")
                else:
                    dest = download_file(repo, f, os.path.join(folder_roots(folder)[0], name))
                    lines.append(f"downloaded {f} to {dest}")
                pbar.update_absolute(i + 1, len(todo))
        else:
            lines += [f"missing: {_shown(f)} ({md.repo_url(repo)})" for repo, f in todo]
            if todo:
                lines.append("switch 'download' on and queue again to fetch them")
        # the install check (files, tensor names, the Python side, a tiny self-test), as it runs here
        lines.append(f"check the install: {C.cli_command('doctor', '--models', roots[0])}")
        text = "\n".join(lines)
        return io.NodeOutput(text, ui=ui.PreviewText(text))


NODES = [HalloDownloadModels]
