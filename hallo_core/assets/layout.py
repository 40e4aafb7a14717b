"""The model folder is the official Hugging Face layout, so a user can download it unchanged.

    MODELS/hallo/net.pth                      fudan-generative-ai/hallo
    MODELS/hallo2/net.pth, hallo2/net_g.pth   fudan-generative-ai/hallo2
    MODELS/sd-vae-ft-mse/                     config.json + diffusion_pytorch_model.safetensors|.bin
    MODELS/stable-diffusion-v1-5/unet/config.json   (only the config: net.pth holds every UNet weight)
    MODELS/wav2vec/wav2vec2-base-960h/
    MODELS/face_analysis/models/
    MODELS/audio_separator/Kim_Vocal_2.onnx
    MODELS/facelib/, MODELS/realesrgan/       (Hallo2 4K upscaling)

Nothing is downloaded here: fetching is :mod:`hallo_core.assets.download`, only on request.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional, Tuple, Union

from ..errors import ModelMissingError

HALLO_REPO = "fudan-generative-ai/hallo"
HALLO2_REPO = "fudan-generative-ai/hallo2"

# face_analysis/models: the SCRFD detector, the ArcFace recogniser and MediaPipe's landmarker
FACE_DETECTOR = "scrfd_10g_bnkps.onnx"
FACE_RECOGNIZER = "glintr100.onnx"
FACE_LANDMARKER = "face_landmarker_v2_with_blendshapes.task"

# component -> (relative path, HF repo, files to fetch, kind). Exact file names, not globs:
# the repos also hold files Hallo never reads (insightface's 1k3d68/2d106det/genderage, the
# YOLO face detectors, the CodeFormer training weights), several hundred MB that a glob would
# pull in. The two repos share everything but their own net.pth folders (hallo/ vs hallo2/).
COMPONENTS = {
    "hallo": ("hallo/net.pth", HALLO_REPO, ["hallo/net.pth"], "file"),
    "hallo2": ("hallo2/net.pth", HALLO2_REPO, ["hallo2/net.pth"], "file"),
    "hallo2_sr": ("hallo2/net_g.pth", HALLO2_REPO, ["hallo2/net_g.pth"], "file"),
    "vae": ("sd-vae-ft-mse", HALLO_REPO, ["sd-vae-ft-mse/config.json",
                                          "sd-vae-ft-mse/diffusion_pytorch_model.safetensors"], "dir"),
    "unet_config": ("stable-diffusion-v1-5/unet/config.json", HALLO_REPO,
                    ["stable-diffusion-v1-5/unet/config.json"], "file"),
    "wav2vec": ("wav2vec/wav2vec2-base-960h", HALLO_REPO,
                [f"wav2vec/wav2vec2-base-960h/{f}" for f in ("config.json", "preprocessor_config.json",
                                                             "model.safetensors")], "dir"),
    "face_analysis": ("face_analysis/models", HALLO_REPO,
                      [f"face_analysis/models/{f}" for f in (FACE_DETECTOR, FACE_RECOGNIZER, FACE_LANDMARKER)],
                      "dir"),
    "audio_separator": ("audio_separator/Kim_Vocal_2.onnx", HALLO_REPO,
                        ["audio_separator/Kim_Vocal_2.onnx"], "file"),
    "facelib": ("facelib", HALLO2_REPO, ["facelib/detection_Resnet50_Final.pth", "facelib/parsing_parsenet.pth"],
                "dir"),
    "realesrgan": ("realesrgan", HALLO2_REPO, ["realesrgan/RealESRGAN_x2plus.pth"], "dir"),
}

# what each job needs
BUNDLES = {
    "hallo": ["hallo", "vae", "unet_config", "wav2vec", "face_analysis", "audio_separator"],
    "hallo2": ["hallo2", "vae", "unet_config", "wav2vec", "face_analysis", "audio_separator"],
    "hallo2-4k": ["hallo2_sr", "facelib", "realesrgan"],
}


# Files that callers open one by one (the loaders of the node pack, the upscaler), by role.
UPSCALER_FILES = {
    "codeformer": COMPONENTS["hallo2_sr"][2][0],
    "detector": COMPONENTS["facelib"][2][0],
    "parser": COMPONENTS["facelib"][2][1],
    "bg": COMPONENTS["realesrgan"][2][0],
}
FACE_FILES = (FACE_DETECTOR, FACE_RECOGNIZER, FACE_LANDMARKER)
# weight files whose tensor-name prefixes ``hallo doctor`` checks
CHECKPOINT_FILES = {
    "hallo": COMPONENTS["hallo"][2][0],
    "hallo2": COMPONENTS["hallo2"][2][0],
    "vae": COMPONENTS["vae"][2][1],
    **UPSCALER_FILES,
}


# Inside ComfyUI every file goes to models/hallo in the layout above, except the background
# upscaler: the upscale workflow loads it with core's "Load Upscale Model", which lists
# models/upscale_models by file name.
COMFY_FOLDERS = {"realesrgan": "upscale_models"}
COMFY_HALLO_FOLDER = "hallo"


def comfy_place(rel: str) -> Tuple[str, str]:
    """(ComfyUI model folder name, path inside it) of ``rel``, a file of the layout."""
    rel = rel.replace("\\", "/")
    for comp, folder in COMFY_FOLDERS.items():
        if rel in COMPONENTS[comp][2]:
            return folder, rel.rsplit("/", 1)[-1]
    return COMFY_HALLO_FOLDER, rel


def rel_path(component: str) -> str:
    """Path of a component relative to the models folder (same as inside its Hugging Face repo)."""
    return COMPONENTS[component][0]


def repo_url(repo: str) -> str:
    return f"https://huggingface.co/{repo}"


def source_of(rel: str) -> str:
    """Download page of the repo holding ``rel`` (a path under the models folder)."""
    rel = rel.replace("\\", "/")
    for path, repo, files, _ in COMPONENTS.values():
        if rel == path or rel in files or rel.startswith(path.rstrip("/") + "/"):
            return repo_url(repo)
    return repo_url(HALLO2_REPO if rel.startswith("hallo2") else HALLO_REPO)


class ModelFileMissing(ModelMissingError):
    """A required model file is absent; ``component`` and ``path`` name it, the fix names its repo."""


@dataclass
class ModelsDir:
    root: Path

    def path(self, component: str) -> Path:
        return self.root / COMPONENTS[component][0]

    def require(self, component: str) -> Path:
        rel, repo, _, kind = COMPONENTS[component]
        p = self.root / rel
        ok = p.is_dir() and any(p.iterdir()) if kind == "dir" else p.is_file()
        if not ok:
            raise ModelFileMissing(
                f"missing {component}: expected {p} ({'folder' if kind == 'dir' else 'file'} of the Hugging "
                f"Face repo {repo}, path '{rel}')",
                fix=f"download it with `python -m hallo_core download --models {self.root} --which {component}` "
                    f"or from https://huggingface.co/{repo}", component=component, path=str(p))
        return p

    def net(self, hallo2: bool = False) -> Path:
        """The diffusion checkpoint; a converted ``net.safetensors`` next to it is preferred."""
        p = self.path("hallo2" if hallo2 else "hallo")
        st = p.with_suffix(".safetensors")
        return st if st.is_file() else self.require("hallo2" if hallo2 else "hallo")

    def vae(self) -> Path:
        p = self.require("vae")
        if not (p / "config.json").is_file():
            raise ModelFileMissing(f"missing {p / 'config.json'} (sd-vae-ft-mse of {HALLO_REPO})",
                                   fix=f"download it with `python -m hallo_core download --models {self.root} "
                                       "--which vae`", component="vae", path=str(p / "config.json"))
        return p

    def unet_config(self) -> Optional[Path]:
        """The SD1.5 UNet config if present (None = the built-in SD1.5 values)."""
        p = self.path("unet_config")
        return p if p.is_file() else None

    def missing(self, bundle: str) -> List[str]:
        out = []
        for c in BUNDLES[bundle]:
            try:
                self.require(c)
            except ModelFileMissing as e:
                out.append(str(e))
        return out


def resolve(models: Union[str, Path]) -> ModelsDir:
    root = Path(models).expanduser()
    if not root.is_dir():
        raise ModelFileMissing(f"models folder {root} does not exist", fix="give the models folder (see README: "
                               f"models folder; the layout of {HALLO_REPO})", path=str(root))
    return ModelsDir(root)


def files_to_fetch(which: Union[str, Iterable[str]]) -> List[Tuple[str, str]]:
    """(HF repo, path) of every file of the named components / bundles, once each, in order."""
    names = [which] if isinstance(which, str) else list(which)
    comps: List[str] = []
    for n in names:
        comps += BUNDLES.get(n, [n])
    out: List[Tuple[str, str]] = []
    for c in dict.fromkeys(comps):
        if c not in COMPONENTS:
            raise ValueError(f"unknown component {c!r}; choose from {sorted(COMPONENTS)} or {sorted(BUNDLES)}")
        _, repo, files, _ = COMPONENTS[c]
        out += [(repo, f) for f in files if (repo, f) not in out]
    return out
