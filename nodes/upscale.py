"""Hallo2 temporal upscaler nodes: temporal CodeFormer face restoration + core UPSCALE_MODEL background."""

from __future__ import annotations

import os

import torch
from comfy_api.latest import io

from hallo_core.assets.layout import UPSCALER_FILES

from . import common as C
from . import outputs as F
from . import options as O
from .progress import frame_progress

BG_NAME = os.path.basename(UPSCALER_FILES["bg"])  # upstream's background model, in ComfyUI's upscale_models


class HalloUpscalerLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="Hallo2_UpscalerLoader",
            display_name="Hallo2 Temporal Upscaler Loader",
            category=f"{C.CATEGORY}/loaders",
            description=f"Loads Hallo2's temporal CodeFormer ({UPSCALER_FILES['codeformer']}), the RetinaFace-R50 "
                        f"face detector ({UPSCALER_FILES['detector']}) and the ParseNet face parser "
                        f"({UPSCALER_FILES['parser']}) from models/hallo.",
            inputs=[
                io.Boolean.Input("fp16", default=False,
                                 tooltip="Run the face restorer under fp16 autocast on CUDA (upstream's --fp16); "
                                         "weights stay fp32. Ignored on CPU."),
                io.Boolean.Input("use_parser", default=True,
                                 tooltip="Blend the restored face with a face-parsing mask (upstream). Off: "
                                         "square soft mask only."),
            ],
            outputs=[C.HalloUpscalerType.Output(display_name="upscaler",
                                                tooltip="Temporal face restorer for 'Hallo2 Temporal Upscale'.")],
        )

    @classmethod
    def execute(cls, fp16, use_parser) -> io.NodeOutput:
        from hallo_core.io import upscaler_weights as uw

        net_g = C.find_file(UPSCALER_FILES["codeformer"])
        det = C.find_file(UPSCALER_FILES["detector"])
        par = C.find_file(UPSCALER_FILES["parser"]) if use_parser else None
        dev, off = C.load_device(), C.offload_device()
        dtype = torch.float32  # upstream keeps the weights fp32 and uses autocast for --fp16
        ops = C.pick_operations(dtype, dev)
        # only the CodeFormer would take another precision; detector and parser stay fp32 (as upstream)
        mods = {"codeformer": uw.load_temporal_codeformer(net_g, device=off, dtype=dtype, operations=ops),
                "detector": uw.load_retinaface(det, device=off, dtype=torch.float32, operations=ops)}
        if par is not None:
            mods["parser"] = uw.load_parsenet(par, device=off, dtype=torch.float32, operations=ops)
        patcher = C.make_patcher(C.Container(off, dtype, **mods))
        return io.NodeOutput(C.UpscalerPatcher(patcher=patcher, dtype=dtype, fp16=bool(fp16),
                                              paths={"net_g": net_g, "detector": det, "parser": par}))


def _background(upscale_model):
    """core UPSCALE_MODEL (spandrel) as hallo_core's BGR x2 upscaler, tiled like core's node."""
    if upscale_model is None:
        return None, lambda: None
    import comfy.model_management as mm
    import comfy.utils

    device = mm.get_torch_device()
    mm.free_memory(mm.module_size(upscale_model.model) + 512 * 512 * 3 * 4 * 384, device)
    upscale_model.to(device)

    def model(x: torch.Tensor) -> torch.Tensor:
        return comfy.utils.tiled_scale(x.to(device), lambda a: upscale_model(a), tile_x=512, tile_y=512,
                                       overlap=32, upscale_amount=upscale_model.scale)

    from hallo_core.upscale.background import tensor_upscaler

    return tensor_upscaler(model), lambda: upscale_model.to("cpu")


class HalloTemporalUpscale(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="Hallo2_TemporalUpscale",
            display_name="Hallo2 Temporal Upscale",
            category=f"{C.CATEGORY}/upscale",
            description="Hallo2's high-resolution stage: restores the face over 16-frame windows with the "
                        "temporal CodeFormer, upscales the background with a core upscale model "
                        f"({BG_NAME} from models/upscale_models) and pastes the face back. Frames "
                        "without a face are passed through background-upscaled.",
            inputs=[
                C.HalloUpscalerType.Input("upscaler", tooltip="From 'Hallo2 Temporal Upscaler Loader'."),
                io.MultiType.Input("frames", types=[io.Image, io.Video],
                                   tooltip="IMAGE frames, or the VIDEO of 'Hallo2 Long Video Sampler' (read "
                                           "frame by frame, so long files never sit in memory)."),
                io.UpscaleModel.Input("upscale_model", optional=True,
                                      tooltip="Background upscaler (core 'Load Upscale Model', e.g. "
                                              f"{BG_NAME}). Without it the background is resized "
                                              "with Lanczos only."),
            ] + O.inputs("upscale", "fidelity_weight") + [
                io.Boolean.Input("face_upsample", default=False,
                                 tooltip="Also upscale the restored face with the background model before "
                                         "pasting (upstream option)."),
            ] + O.inputs("smooth_landmarks") + F.file_output_inputs(
                "hallo2/upscaled", "IMAGE frames out.",
                "stream an mp4 (audio copied from a VIDEO input) and return it as VIDEO; for long videos.",
                "Output file prefix in file mode."),
            outputs=[
                io.Image.Output(display_name="frames", tooltip="Upscaled IMAGE frames (file mode: last frame only)."),
                io.Video.Output(display_name="video", tooltip="The upscaled video (file or frames + audio)."),
            ],
            hidden=[io.Hidden.unique_id],
            is_output_node=True,
        )

    @classmethod
    def validate_inputs(cls, fidelity, landmark_smoothing, filename_prefix) -> bool | str:
        why = F.prefix_problem(filename_prefix) if filename_prefix is not None else None
        return why or O.validate(fidelity=fidelity, landmark_smoothing=landmark_smoothing)

    @classmethod
    def execute(cls, upscaler, frames, scale, fidelity, face_upsample, landmark_smoothing, output_mode,
                filename_prefix, upscale_model=None) -> io.NodeOutput:
        from hallo_core.media.video import NoFramesError
        from hallo_core.upscale import UpscalerModels, upscale_frames, upscale_to_file, upscale_video

        node_id = cls.hidden.unique_id if cls.hidden is not None else None
        v = O.checked(scale=scale, fidelity=fidelity, landmark_smoothing=landmark_smoothing)
        scale, fidelity, landmark_smoothing = v["upscale"], v["fidelity_weight"], v["smooth_landmarks"]
        src = F.frames_input(frames)
        C.load_gpu([upscaler.patcher], full=True)  # detector/parser are not partially loadable
        bg, release = _background(upscale_model)
        m = upscaler.patcher.model
        models = UpscalerModels(m.codeformer, m.detector, getattr(m, "parser", None), bg)
        s, w = int(scale), float(fidelity)
        kw = dict(face_upsample=bool(face_upsample), landmark_smoothing=float(landmark_smoothing), fp16=upscaler.fp16,
                  progress=frame_progress(node_id, src.count), interrupt=C.interrupted)
        try:
            if output_mode == "image":
                out = upscale_frames(src.frames(), models.codeformer, models.detector, models.parser, bg, s, w,
                                     total=src.count, **kw)
                return F.image_result(list(out), src.fps, src.image_audio())
            path, fname, subfolder = F.new_output_file(filename_prefix, src.path, "Hallo2 temporal upscale")
            try:
                if src.path is not None:
                    report = upscale_video(src.path, path, models, s, w, **kw)
                else:
                    wave, sr = src.waveform()
                    report = upscale_to_file(src.images, path, models, src.fps, s, w, waveform=wave, sample_rate=sr,
                                             total=src.count, **kw)
            except NoFramesError:
                raise F.no_frames() from None
            return F.file_result(report.last, path, fname, subfolder)
        finally:
            release()


NODES = [HalloUpscalerLoader, HalloTemporalUpscale]
