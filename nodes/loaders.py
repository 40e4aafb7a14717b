"""Loader nodes: Hallo network, VAE, audio models, face analysis models.

Files come from ``models/hallo`` (and any ``hallo:`` path of extra_model_paths.yaml) in the official
Hugging Face layout. Each torch model sits behind a ModelPatcher over a plain container module, built on
the offload device with comfy.ops so ComfyUI can move, partially load and interrupt it.
"""

from __future__ import annotations

import os

from comfy_api.latest import io

from hallo_core.assets import layout as md

from . import common as C

UNET_CONFIG = md.rel_path("unet_config")
VAE_DIR = md.rel_path("vae")
WAV2VEC_DIR = md.rel_path("wav2vec")
FACE_DIR = md.rel_path("face_analysis")
*FACE_FILES, LANDMARKER = md.FACE_FILES  # the landmarker is optional (legacy FaceMesh otherwise)
SEPARATOR_DIR = md.rel_path("audio_separator").rsplit("/", 1)[0]
NET, NET2 = md.rel_path("hallo"), md.rel_path("hallo2")

HalloVaeType = io.Custom("HALLO_VAE")


def _net_files() -> list[str]:
    """Network files found, then the official names that are not (a workflow saved with one of them
    still validates on an empty folder; running it reports every missing file at once)."""
    names = C.list_files((".pth", ".safetensors", ".sft"))
    found = [n for n in names if os.path.basename(n).startswith("net") and not os.path.basename(n).startswith("net_g")]
    return found + [n for n in (NET, NET2) if n not in found]


def _vae_dirs() -> list[str]:
    found = []
    for root in C.model_roots():
        if os.path.isdir(root):
            for name in sorted(os.listdir(root)):
                if "vae" in name.lower() and os.path.isfile(os.path.join(root, name, "config.json")):
                    found.append(name)
    found = sorted(set(found))
    return found + ([VAE_DIR] if VAE_DIR not in found else [])


def _separators() -> list[str]:
    found = C.list_files((".onnx",), SEPARATOR_DIR + "/")
    official = md.rel_path("audio_separator")
    return ["none"] + found + ([official] if official not in found else [])


def _find_unet_config(model_root: str) -> str | None:
    candidates = [os.path.join(model_root, UNET_CONFIG)] + [os.path.join(r, UNET_CONFIG) for r in C.model_roots()]
    return next((p for p in candidates if os.path.isfile(p)), None)


def _prompt(cls):
    """The queued prompt (API format), for checking every model file of the workflow at once."""
    return getattr(cls.hidden, "prompt", None) if cls.hidden is not None else None


class HalloModelLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="Hallo_ModelLoader",
            display_name="Hallo Model Loader",
            category=f"{C.CATEGORY}/loaders",
            description=f"Loads the Hallo / Hallo2 network ({os.path.basename(NET)}: reference UNet, denoising UNet with audio "
                        "and motion modules, face locator, projections) from models/hallo. The UNet shape comes "
                        f"from {UNET_CONFIG} when present, else the built-in SD1.5 config.",
            inputs=[
                io.Combo.Input("model", options=_net_files(),
                               tooltip=f"{os.path.basename(NET)} (or a converted .safetensors) under models/hallo: "
                                       f"{NET} for Hallo, {NET2} for Hallo2 long videos."),
                io.Combo.Input("precision", options=C.PRECISIONS, default="auto",
                               tooltip="Weight precision. auto follows ComfyUI's model management "
                                       "(fp16/bf16 on GPUs that support it, fp32 on CPU)."),
            ],
            outputs=[C.HalloModelType.Output(display_name="hallo_model",
                                             tooltip="The Hallo network, managed by ComfyUI (loaded to the GPU "
                                                     "only while a Hallo node runs).")],
            hidden=[io.Hidden.prompt],
        )

    @classmethod
    def execute(cls, model, precision) -> io.NodeOutput:
        import folder_paths

        C.check_prompt_models(_prompt(cls))

        path = folder_paths.get_full_path(C.FOLDER, model)
        if path is None:
            raise C.missing(model)
        root = C.root_of(path, model)
        cfg_path = _find_unet_config(root)
        if cfg_path is None:
            C.log.info("Hallo: %s not found, using the built-in SD1.5 UNet config", UNET_CONFIG)
        dev = C.load_device()
        dtype = C.pick_dtype(precision, dev, n_params=2_400_000_000)
        ops = C.pick_operations(dtype, dev)
        from hallo_core.io.checkpoints import load_hallo_weights
        from hallo_core.models import build_hallo_net, load_unet_config

        cfg = load_unet_config(cfg_path)
        # no weights allocated (meta device); the strict checkpoint load fills it on the CPU, cast to dtype
        net = build_hallo_net(unet_config=cfg, operations=ops, device="meta", dtype=dtype)
        load_hallo_weights(net, path)
        net = net.to(device=C.offload_device(), dtype=dtype).eval().requires_grad_(False)
        compute = C.compute_dtype(dtype, dev)
        if compute != dtype:  # manual cast: weights stay in dtype, every layer computes in compute
            net.set_compute_dtype(compute)
        off = C.offload_device()
        # two patchers: the reference UNet runs once per clip and can be given back between its
        # passes (low_vram) without touching the denoiser's weights
        main = C.make_patcher(C.Container(off, dtype, compute, denoising_unet=net.denoising_unet,
                                          face_locator=net.face_locator, imageproj=net.imageproj,
                                          audioproj=net.audioproj))
        ref = C.make_patcher(C.Container(off, dtype, compute, reference_unet=net.reference_unet))
        net.placement = C.ComfyPlacement(main, ref, compute)
        version = "hallo2" if "hallo2" in model.replace("\\", "/").split("/")[0] else "hallo"
        return io.NodeOutput(C.HalloModel(patcher=main, version=version, dtype=dtype, unet_config=cfg, path=path,
                                          ref_patcher=ref, compute_dtype=compute, network=net))


class HalloVAE:
    """HALLO_VAE: the official sd-vae-ft-mse (diffusers AutoencoderKL) behind a ModelPatcher."""

    def __init__(self, patcher, folder: str):
        self.patcher = patcher
        self.folder = folder  # also what tells it from core's VAE (nodes/comfy_vae.vae_codec)

    def codec(self):
        from hallo_core.io.vae import VaeCodec

        return VaeCodec(self.patcher.model.vae)


class HalloVAELoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="Hallo_VAELoader",
            display_name="Hallo VAE Loader",
            category=f"{C.CATEGORY}/loaders",
            description=f"Loads the official {VAE_DIR} folder from models/hallo. ComfyUI's own "
                        "'Load VAE' with vae-ft-mse-840000 works as well.",
            inputs=[
                io.Combo.Input("vae_folder", options=_vae_dirs(),
                               tooltip="Folder under models/hallo holding config.json and "
                                       f"{os.path.basename(md.COMPONENTS['vae'][2][1])} ({VAE_DIR})."),
                io.Combo.Input("precision", options=C.PRECISIONS, default="fp32",
                               tooltip="VAE precision, the same policy as the CLI: auto = fp32. fp16 / bf16 "
                                       "are faster on a GPU; the SD VAE can overflow fp16, so every chunk is "
                                       "checked and one that overflows is recomputed in fp32."),
            ],
            outputs=[HalloVaeType.Output(display_name="vae", tooltip="The VAE, for the Hallo reference and "
                                                                     "sampler nodes.")],
            hidden=[io.Hidden.prompt],
        )

    @classmethod
    def execute(cls, vae_folder, precision) -> io.NodeOutput:
        C.check_prompt_models(_prompt(cls))
        folder = C.find_dir(vae_folder, ("config.json",))
        from hallo_core.io.vae import load_vae, vae_dtype

        dtype = vae_dtype(precision)

        vae = load_vae(folder, device=C.offload_device(), dtype=dtype)
        patcher = C.make_patcher(C.Container(C.offload_device(), dtype, vae=vae))
        return io.NodeOutput(HalloVAE(patcher, folder))


class HalloAudioModelLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="Hallo_AudioModelLoader",
            display_name="Hallo Audio Models Loader",
            category=f"{C.CATEGORY}/loaders",
            description=f"Loads {WAV2VEC_DIR} (the audio encoder Hallo was trained with) and, optionally, "
                        f"the {md.rel_path('audio_separator')} vocal separator.",
            inputs=[
                io.Combo.Input("separator", options=_separators(), default="none",
                               tooltip=f"Vocal separator run before wav2vec2 ({md.rel_path('audio_separator')}). "
                                       "'none' feeds the audio as is; the video always keeps the original audio."),
                io.Combo.Input("precision", options=C.PRECISIONS, default="fp32",
                               tooltip="wav2vec2 precision; fp32 matches upstream's features most closely."),
            ],
            outputs=[C.HalloAudioModelsType.Output(display_name="audio_models",
                                                   tooltip="wav2vec2 (+ separator) for the Hallo Audio "
                                                           "Embeds node.")],
            hidden=[io.Hidden.prompt],
        )

    @classmethod
    def execute(cls, separator, precision) -> io.NodeOutput:
        C.check_prompt_models(_prompt(cls))
        folder = C.find_dir(WAV2VEC_DIR, ("config.json",))
        sep = None if separator == "none" else C.find_file(separator)
        dev = C.load_device()
        dtype = C.pick_dtype(precision, dev) if precision != "auto" else C.pick_dtype("fp32", dev)
        from hallo_core.audio import HalloWav2Vec

        w2v = HalloWav2Vec.from_pretrained(folder, device=C.offload_device(), dtype=dtype)
        patcher = C.make_patcher(C.Container(C.offload_device(), dtype, wav2vec=w2v))
        return io.NodeOutput(C.AudioModels(patcher=patcher, separator_path=sep, dtype=dtype))


class HalloFaceModelLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="Hallo_FaceModelLoader",
            display_name="Hallo Face Models Loader",
            category=f"{C.CATEGORY}/loaders",
            description="Finds the face analysis models (SCRFD detector, ArcFace recogniser, MediaPipe face "
                        f"landmarker: {', '.join(md.FACE_FILES)}) under models/hallo/{FACE_DIR}. Sessions are created when the "
                        "face node runs and released right after.",
            inputs=[
                io.Combo.Input("onnx_device", options=["cpu", "gpu"], default="cpu",
                               tooltip="Where onnxruntime runs detection and the identity embedding. The models "
                                       "are small; CPU avoids a second GPU runtime."),
            ],
            outputs=[C.HalloFaceModelsType.Output(display_name="face_models",
                                                  tooltip="Face model locations for the Hallo Face Analysis node.")],
            hidden=[io.Hidden.prompt],
        )

    @classmethod
    def execute(cls, onnx_device) -> io.NodeOutput:
        C.check_prompt_models(_prompt(cls))
        for f in FACE_FILES:
            C.find_file(f"{FACE_DIR}/{f}")
        folder = C.find_dir(FACE_DIR, tuple(FACE_FILES))
        if not os.path.isfile(os.path.join(folder, LANDMARKER)):
            C.log.info("Hallo: %s not found in %s; the face node will use mediapipe's legacy FaceMesh if the "
                       "installed mediapipe still has it", LANDMARKER, folder)
        return io.NodeOutput(C.FaceModels(models_dir=os.path.dirname(folder), onnx_device=onnx_device))


NODES = [HalloModelLoader, HalloVAELoader, HalloAudioModelLoader, HalloFaceModelLoader]
