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
from ..errors import ModelMissingError, WeightsError, one_line
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


def _fail(e: CheckpointError, fix: str, key: str = "models") -> WeightsError:
    """A header problem of a weights file, with the fix of the check that found it."""
    return WeightsError(e.what, key, fix, path=e.path)


def check_net_file(path: PathLike, unet_config=None) -> Optional[str]:
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
            raise WeightsError(f"the UNet config {unet_config} does not describe Hallo's network "
                               f"({one_line(e, 120)})", fix="use the SD1.5 unet/config.json of the official layout",
                               path=str(unet_config)) from None
        compare_manifest(found, want, str(path))
    except CheckpointError as e:
        raise _fail(e, fix) from None
    return None


def _vae_expected(folder: Path) -> Dict[str, Tuple[int, ...]]:
    import torch
    from diffusers import AutoencoderKL

    cfg = AutoencoderKL.load_config(str(folder))
    try:
        with torch.device("meta"):
            vae = AutoencoderKL.from_config(cfg)
    except (ValueError, TypeError, KeyError, RuntimeError, AssertionError) as e:  # diffusers' own refusals
        raise WeightsError(f"the VAE config {folder / 'config.json'} cannot be built ({one_line(e, 120)})",
                           fix=_refetch("vae"), path=str(folder / "config.json")) from None
    return _shapes(vae)


def check_vae_folder(folder: PathLike) -> None:
    """sd-vae-ft-mse: config.json parses, the weights' keys are the VAE's.

    Attention keys are compared by count only: diffusers renames the old spelling of the mid-block
    attention (query/key/value/proj_attn) when it loads, and either spelling is a valid file.
    """
    from ..io.vae import vae_config

    folder = Path(folder)
    fix = _refetch("vae")
    vae_config(folder)
    weights = _weights_file(folder, ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"), "vae")
    try:
        found = manifest(weights)
        if found is None:
            return
        want = _vae_expected(folder)
        plain = {k: v for k, v in want.items() if ".attentions." not in k}
        compare_manifest({k: v for k, v in found.items() if ".attentions." not in k}, plain, str(weights),
                         "the VAE of its config.json")
        n_att = sum(".attentions." in k for k in want)
        got_att = sum(".attentions." in k for k in found)
        if n_att != got_att:
            raise CheckpointError(f"{weights} has {got_att} attention tensors, the VAE needs {n_att}")
    except CheckpointError as e:
        raise _fail(e, fix) from None


def _weights_file(folder: Path, names: Tuple[str, ...], component: str) -> Path:
    """The first of ``names`` in ``folder``, or the ModelMissingError naming the component."""
    for n in names:
        if (folder / n).is_file():
            return folder / n
    raise ModelMissingError(f"no {component} weights in {folder} ({names[0]})", fix=_refetch(component),
                            component=component, path=str(folder))


def check_wav2vec_folder(folder: PathLike) -> None:
    """wav2vec2-base-960h: config.json builds the encoder, the weights' keys (after the loader's
    renames) are that encoder's."""
    import torch
    from transformers import Wav2Vec2Config

    from ..audio.wav2vec import HalloWav2Vec, _convert_keys

    folder = Path(folder)
    fix = _refetch("wav2vec")
    if not (folder / "config.json").is_file():  # transformers would fall back to its default config
        raise ModelMissingError(f"the wav2vec2 folder {folder} has no config.json", fix=fix, component="wav2vec",
                                path=str(folder / "config.json"))
    try:
        config = Wav2Vec2Config.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as e:
        raise WeightsError(f"the wav2vec2 config in {folder} cannot be read ({one_line(e, 120)})", fix=fix,
                           path=str(folder / "config.json")) from None
    weights = _weights_file(folder, ("model.safetensors", "pytorch_model.bin"), "wav2vec")
    try:
        found = manifest(weights)
        if found is None:
            return
        with torch.device("meta"):
            want = _shapes(HalloWav2Vec(config))
        found = _convert_keys(found)
        found.pop("masked_spec_embed", None)
        want.pop("masked_spec_embed", None)
        compare_manifest(found, want, str(weights), "wav2vec2 of its config.json")
    except CheckpointError as e:
        raise _fail(e, fix) from None


def check_face_folder(folder: PathLike) -> List[str]:
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
        raise _fail(e, fix) from None
    return notes


def check_onnx_file(path: PathLike, fix: str = "download it again") -> None:
    try:
        onnx_check(path)
    except CheckpointError as e:
        raise _fail(e, fix) from None


def check_torch_file(path: PathLike, fix: str = "download it again", wrappers: Tuple[str, ...] = (),
                     bare_key: str = "", key: str = "models") -> None:
    """Any torch weights file (the upscalers'): it opens, lists tensors only, and is complete.

    ``wrappers``: the top-level keys the loader takes the tensors from; ``bare_key``: a key that
    marks a state dict saved without a wrapper, which the loader takes too. A file that holds its
    tensors under another key is refused here, before any weights are read.
    """
    try:
        found = manifest(path)
    except CheckpointError as e:
        raise _fail(e, fix, key) from None
    if not wrappers or found is None:
        return
    tops = {k.split(".", 1)[0] for k in found}
    if not tops & set(wrappers) and bare_key not in found:
        named = " or ".join(wrappers) + (" or at the top level" if bare_key else "")
        raise WeightsError(f"{path} holds its tensors under {', '.join(sorted(tops)[:3])}, not under {named}", key,
                           fix, path=str(path))


def check_model_files(models: PathLike, bundle: str = "hallo", separator: bool = True,
) -> List[str]:
    """Every file ``bundle`` (hallo, hallo2, hallo2-4k) needs: present and with the expected keys.

    Returns notes (optional parts absent); raises UserError for the first bad or missing file.
    """
    from . import layout as md

    m = md.resolve(models)
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
            check_onnx_file(p, f"download it again ({fix_dl})")
            continue
        if comp == "unet_config":
            p = m.unet_config()
            if p is None:
                notes.append(f"{models_dir.rel_path('unet_config')} is absent: the SD1.5 values are used")
            else:
                try:
                    json.loads(Path(p).read_text(encoding="utf-8"))
                except (OSError, ValueError) as e:
                    raise WeightsError(f"the UNet config {p} cannot be read ({one_line(e, 100)})",
                                       fix=f"download it again ({fix_dl})", path=str(p)) from None
            continue
        try:
            p = m.net(comp == "hallo2") if comp in ("hallo", "hallo2") else m.require(comp)
        except md.ModelFileMissing:
            raise md.ModelFileMissing(f"missing {comp}: {m.root / rel}",
                                      fix=f"run `{fix_dl}`, or download '{rel}' from https://huggingface.co/{repo} "
                                          f"into {m.root}", component=comp, path=str(m.root / rel)) from None
        if comp in ("hallo", "hallo2"):
            note = check_net_file(p, m.unet_config())
            if note:
                notes.append(note)
        elif comp == "vae":
            check_vae_folder(p)
        elif comp == "wav2vec":
            check_wav2vec_folder(p)
        elif comp == "face_analysis":
            notes += check_face_folder(p)
        elif comp == "hallo2_sr":
            check_torch_file(p, f"download it again ({fix_dl})", wrappers=("params_ema",))
        elif comp in ("facelib", "realesrgan"):
            for f in _files:
                esrgan = comp == "realesrgan"  # the loaders: hallo_core.io.upscaler_weights
                check_torch_file(m.root / f, f"download it again ({fix_dl})",
                                 wrappers=("params_ema", "params") if esrgan else (),
                                 bare_key="conv_first.weight" if esrgan else "")
    return notes


__all__ = ["expected_net_keys", "check_net_file", "check_vae_folder", "check_wav2vec_folder",
           "check_face_folder", "check_onnx_file", "check_torch_file", "check_model_files"]
