"""Explicit download of the official weights (huggingface_hub). Never runs unless the user queues it
with ``download`` switched on; importing the pack downloads nothing."""

from __future__ import annotations

import os

from comfy_api.latest import io, ui

from . import common as C

REPO = "fudan-generative-ai/hallo2"  # holds everything Hallo needs too (same layout, plus hallo2/)

# What each model set needs, as paths in the Hugging Face repository = paths under models/hallo.
SETS = {
    "hallo": ["hallo/net.pth"],
    "hallo2": ["hallo2/net.pth"],
    "common": [
        "stable-diffusion-v1-5/unet/config.json",
        "sd-vae-ft-mse/config.json", "sd-vae-ft-mse/diffusion_pytorch_model.safetensors",
        "wav2vec/wav2vec2-base-960h/config.json", "wav2vec/wav2vec2-base-960h/preprocessor_config.json",
        "wav2vec/wav2vec2-base-960h/model.safetensors",
        "face_analysis/models/scrfd_10g_bnkps.onnx", "face_analysis/models/glintr100.onnx",
        "face_analysis/models/face_landmarker_v2_with_blendshapes.task",
        "audio_separator/Kim_Vocal_2.onnx",
    ],
    "upscaler": ["hallo2/net_g.pth", "facelib/detection_Resnet50_Final.pth", "facelib/parsing_parsenet.pth",
                 "realesrgan/RealESRGAN_x2plus.pth"],
}
CHOICES = {
    "hallo (portrait video)": ["common", "hallo"],
    "hallo2 (long video)": ["common", "hallo2"],
    "hallo2 + temporal upscaler": ["common", "hallo2", "upscaler"],
    "everything": ["common", "hallo", "hallo2", "upscaler"],
}


def files_for(choice: str) -> list[str]:
    out: list[str] = []
    for s in CHOICES[choice]:
        out += [f for f in SETS[s] if f not in out]
    return out


def missing_files(files: list[str], roots: list[str]) -> list[str]:
    return [f for f in files if not any(os.path.isfile(os.path.join(r, f)) for r in roots)]


class HalloDownloadModels(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="Hallo_DownloadModels",
            display_name="Hallo Download Models",
            category=f"{C.CATEGORY}/loaders",
            description=f"Lists which official files are missing under models/hallo and, when 'download' is on, "
                        f"fetches them from https://huggingface.co/{REPO} with huggingface_hub (several GB). "
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

            from . import engine

            target = roots[0]
            os.makedirs(target, exist_ok=True)
            pbar = comfy.utils.ProgressBar(len(todo))
            for i, f in enumerate(todo):
                C.interrupted()
                engine.hf_download(REPO, [f], target)
                pbar.update_absolute(i + 1, len(todo))
                lines.append(f"downloaded {f}")
        else:
            lines += [f"missing: {f}" for f in todo]
            if todo:
                lines.append("switch 'download' on and queue again to fetch them")
        text = "\n".join(lines)
        return io.NodeOutput(text, ui=ui.PreviewText(text))


NODES = [HalloDownloadModels]
