"""Up-front check of a models folder: every file exists and its key list matches the model.

The expected keys come from building each model on the meta device (no memory, no weights):
the Hallo network from the folder's UNet config, the VAE from its config.json, wav2vec2 from
its config.json. The files are read only as far as their key lists (:mod:`hallo_core.assets.headers`),
so a wrong, truncated or unsafe file is named before the audio is embedded.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

from . import layout as models_dir
from ..errors import UserError, one_line
from ..io.checkpoints import CheckpointError
from .headers import compare_manifest, manifest, onnx_check, zip_check


def _refetch(component: str) -> str:
    """How to get one component of the layout table again."""
    return (f"download {models_dir.rel_path(component)} again "
            f"(python -m hallo_core download --models MODELS --which {component})")

PathLike = Union[str, os.PathLike]
FACE_ONNX = (models_dir.FACE_DETECTOR, models_dir.FACE_RECOGNIZER)
LANDMARKER_TASK = models_dir.FACE_LANDMARKER
LANDMARKER_MEMBERS = ("face_detector.tflite", "face_landmarks_detector.tflite")


def _shapes(module) -> Dict[str, Tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


@lru_cache(maxsize=4)
def _net_keys(config_json: str) -> Dict[str, Tuple[int, ...]]:
    from ..models import build_hallo_net

    return _shapes(build_hallo_net(json.loads(config_json), device="meta"))


def expected_net_keys(unet_config: Union[None, dict, PathLike] = None) -> Dict[str, Tuple[int, ...]]:
    """Keys and shapes of net.pth for a UNet config (None = SD1.5), from the network built on meta."""
    from ..models.config import load_unet_config

    cfg = unet_config if isinstance(unet_config, dict) else load_unet_config(unet_config)
    return dict(_net_keys(json.dumps(cfg, sort_keys=True)))


def _fail(e: Exception, where: str, fix: str) -> UserError:
    return UserError(one_line(e), where, fix)


def check_net_file(path: PathLike, unet_config=None, where: str = "--models") -> Optional[str]:
    """net.pth / net.safetensors has exactly the Hallo network's keys and shapes; returns a note or None."""
    path = Path(path)
    fix = "download it again (python -m hallo_core download --models MODELS --which hallo)"
    try:
        found = manifest(path)
        if found is None:
            return f"{path} is in the legacy torch format: its keys are checked when it is loaded"
        try:
            want = expected_net_keys(unet_config)
        except (OSError, ValueError, KeyError, TypeError, RuntimeError, AssertionError) as e:
            raise UserError(f"the UNet config {unet_config} does not describe Hallo's network ({one_line(e, 120)})",
                            where, "use the SD1.5 unet/config.json of the official layout") from None
        compare_manifest(found, want, str(path))
    except CheckpointError as e:
        raise _fail(e, where, fix) from None
    return None


def _vae_expected(folder: Path) -> Dict[str, Tuple[int, ...]]:
    import torch
    from diffusers import AutoencoderKL

    cfg = AutoencoderKL.load_config(str(folder))
    with torch.device("meta"):
        vae = AutoencoderKL.from_config(cfg)
    return _shapes(vae)


def check_vae_folder(folder: PathLike, where: str = "--models") -> None:
    """sd-vae-ft-mse: config.json parses, the weights' keys are the VAE's.

    Attention keys are compared by count only: diffusers renames the old spelling of the mid-block
    attention (query/key/value/proj_attn) when it loads, and either spelling is a valid file.
    """
    folder = Path(folder)
    fix = _refetch("vae")
    cfg = folder / "config.json"
    try:
        json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"the VAE config {cfg} cannot be read ({one_line(e, 120)})", where, fix) from None
    weights = [folder / n for n in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
               if (folder / n).is_file()]
    if not weights:
        raise UserError(f"no VAE weights in {folder} (diffusion_pytorch_model.safetensors)", where, fix)
    try:
        found = manifest(weights[0])
        if found is None:
            return
        want = _vae_expected(folder)
        plain = {k: v for k, v in want.items() if ".attentions." not in k}
        compare_manifest({k: v for k, v in found.items() if ".attentions." not in k}, plain, str(weights[0]),
                         "the VAE of its config.json")
        n_att = sum(".attentions." in k for k in want)
        got_att = sum(".attentions." in k for k in found)
        if n_att != got_att:
            raise CheckpointError(f"{weights[0]} has {got_att} attention tensors, the VAE needs {n_att}")
    except CheckpointError as e:
        raise _fail(e, where, fix) from None


def check_wav2vec_folder(folder: PathLike, where: str = "--models") -> None:
    """wav2vec2-base-960h: config.json builds the encoder, the weights' keys (after the loader's
    renames) are that encoder's."""
    import torch
    from transformers import Wav2Vec2Config

    from ..audio.wav2vec import HalloWav2Vec, _convert_keys

    folder = Path(folder)
    fix = _refetch("wav2vec")
    try:
        config = Wav2Vec2Config.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as e:
        raise UserError(f"the wav2vec2 config in {folder} cannot be read ({one_line(e, 120)})", where, fix) from None
    weights = [folder / n for n in ("model.safetensors", "pytorch_model.bin") if (folder / n).is_file()]
    if not weights:
        raise UserError(f"no wav2vec2 weights in {folder} (model.safetensors)", where, fix)
    try:
        found = manifest(weights[0])
        if found is None:
            return
        with torch.device("meta"):
            want = _shapes(HalloWav2Vec(config))
        found = _convert_keys(found)
        found.pop("masked_spec_embed", None)
        want.pop("masked_spec_embed", None)
        compare_manifest(found, want, str(weights[0]), "wav2vec2 of its config.json")
    except CheckpointError as e:
        raise _fail(e, where, fix) from None


def check_face_folder(folder: PathLike, where: str = "--models") -> List[str]:
    """face_analysis/models: the two ONNX graphs are whole; the landmarker bundle opens if present."""
    folder = Path(folder)
    fix = _refetch("face_analysis")
    notes = []
    try:
        for name in FACE_ONNX:
            if not (folder / name).is_file():
                raise CheckpointError(f"missing {folder / name}")
            onnx_check(folder / name)
        task = folder / LANDMARKER_TASK
        if task.is_file():
            zip_check(task, LANDMARKER_MEMBERS)
        else:
            notes.append(f"{task} is absent: mediapipe's legacy FaceMesh gives the landmarks")
    except CheckpointError as e:
        raise _fail(e, where, fix) from None
    return notes


def check_onnx_file(path: PathLike, where: str = "--models", fix: str = "download it again") -> None:
    try:
        onnx_check(path)
    except CheckpointError as e:
        raise _fail(e, where, fix) from None


def check_torch_file(path: PathLike, where: str = "--models", fix: str = "download it again") -> None:
    """Any torch weights file (the upscalers'): it opens, lists tensors only, and is complete."""
    try:
        manifest(path)
    except CheckpointError as e:
        raise _fail(e, where, fix) from None


def check_model_files(models: PathLike, bundle: str = "hallo", separator: bool = True,
                      where: str = "--models") -> List[str]:
    """Every file ``bundle`` (hallo, hallo2, hallo2-4k) needs: present and with the expected keys.

    Returns notes (optional parts absent); raises UserError for the first bad or missing file.
    """
    from . import layout as md

    try:
        m = md.resolve(models)
    except md.ModelFileMissing as e:
        raise UserError(one_line(e).split(" (")[0], where, "give the models folder (see README: models folder)") \
            from None
    notes: List[str] = []
    comps = list(md.BUNDLES[bundle])
    if "unet_config" in comps:  # the network's expected keys are built from it: check it first
        comps.remove("unet_config")
        comps.insert(0, "unet_config")
    for comp in comps:
        rel, repo, _files, _kind = md.COMPONENTS[comp]
        fix_dl = f"python -m hallo_core download --models {m.root} --which {comp}"
        if comp == "audio_separator":
            if not separator:
                continue
            p = m.path(comp)
            if not p.is_file():
                notes.append(f"{p} is absent: the audio is used without vocal separation")
                continue
            check_onnx_file(p, where, f"download it again ({fix_dl})")
            continue
        if comp == "unet_config":
            p = m.unet_config()
            if p is None:
                notes.append(f"{models_dir.rel_path('unet_config')} is absent: the SD1.5 values are used")
            else:
                try:
                    json.loads(Path(p).read_text(encoding="utf-8"))
                except (OSError, ValueError) as e:
                    raise UserError(f"the UNet config {p} cannot be read ({one_line(e, 100)})", where,
                                    f"download it again ({fix_dl})") from None
            continue
        try:
            p = m.net(comp == "hallo2") if comp in ("hallo", "hallo2") else m.require(comp)
        except md.ModelFileMissing:
            raise UserError(f"missing {comp}: {m.root / rel}", where,
                            f"run `{fix_dl}`, or download '{rel}' from https://huggingface.co/{repo} into "
                            f"{m.root}") from None
        if comp in ("hallo", "hallo2"):
            note = check_net_file(p, m.unet_config(), where)
            if note:
                notes.append(note)
        elif comp == "vae":
            check_vae_folder(p, where)
        elif comp == "wav2vec":
            check_wav2vec_folder(p, where)
        elif comp == "face_analysis":
            notes += check_face_folder(p, where)
        elif comp == "hallo2_sr":
            check_torch_file(p, where, f"download it again ({fix_dl})")
        elif comp in ("facelib", "realesrgan"):
            for f in _files:
                check_torch_file(m.root / f, where, f"download it again ({fix_dl})")
    return notes


__all__ = ["expected_net_keys", "check_net_file", "check_vae_folder", "check_wav2vec_folder",
           "check_face_folder", "check_onnx_file", "check_torch_file", "check_model_files"]
