"""Face analysis node: portrait IMAGE -> Hallo face data, with the masks as MASK outputs for preview."""

from __future__ import annotations

import torch
from comfy_api.latest import io

from . import common as C
from . import convert


class HalloFaceAnalysis(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="Hallo_FaceAnalysis",
            display_name="Hallo Face Analysis",
            category=f"{C.CATEGORY}/face",
            description="Finds the face in the portrait and builds what Hallo conditions on: lip, expression "
                        "and pose masks, the face region and the identity embedding.",
            inputs=[
                C.HalloFaceModelsType.Input("face_models", tooltip="From 'Hallo Face Models Loader'."),
                io.Image.Input("image", tooltip="The portrait (any size; RGB, RGBA or grey). Only the first "
                                                "image of a batch is used."),
                io.Int.Input("size", default=512, min=128, max=1024, step=64,
                             tooltip="Working resolution (square, multiple of 64). Hallo is trained at 512."),
                io.Combo.Input("mode", options=["stretch", "crop"], default="stretch",
                               tooltip="stretch: resize the whole image to a square (upstream). crop: square "
                                       "crop centred on the face."),
                io.Float.Input("face_expand_ratio", default=1.2, min=1.0, max=3.0, step=0.05,
                               tooltip="How far the face box extends beyond the face outline (upstream 1.2)."),
                io.Combo.Input("no_face", options=["error", "fallback"], default="error",
                               tooltip="No face found: stop with an error, or go on like upstream (zero identity "
                                       "embedding, whole image as the face box; results will be poor)."),
            ],
            outputs=[
                C.HalloFaceDataType.Output(display_name="face_data",
                                           tooltip="Masks, face region and identity embedding for the "
                                                   "Hallo Reference node."),
                io.Image.Output(display_name="reference_image",
                                tooltip="The portrait at the working resolution, as the model sees it."),
                io.Mask.Output(display_name="lip_mask", tooltip="Lip region (blurred), working resolution."),
                io.Mask.Output(display_name="expression_mask",
                               tooltip="Face minus lips (blurred): where the expression branch acts."),
                io.Mask.Output(display_name="pose_mask", tooltip="Everything but the face: where head pose acts."),
                io.Mask.Output(display_name="face_region", tooltip="Hard face box fed to the face locator."),
            ],
        )

    @classmethod
    def validate_inputs(cls, size, face_expand_ratio) -> bool | str:
        if size is not None and (int(size) % 64 != 0 or not 128 <= int(size) <= 1024):
            return f"size must be a multiple of 64 between 128 and 1024, got {size}"
        if face_expand_ratio is not None and not 1.0 <= float(face_expand_ratio) <= 3.0:
            return f"face_expand_ratio must be between 1.0 and 3.0, got {face_expand_ratio}"
        return True

    @classmethod
    def execute(cls, face_models, image, size, mode, face_expand_ratio, no_face) -> io.NodeOutput:
        from hallo_core.face import NoFaceError, prepare_face

        rgb = convert.image_to_rgb_uint8(image, 0)
        C.interrupted()
        # onnxruntime / mediapipe sessions are created and released inside hallo_core for this call.
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if face_models.onnx_device == "gpu" else None
        try:
            face = prepare_face(rgb, face_models.models_dir, size=int(size), mode=mode,
                                face_expand_ratio=float(face_expand_ratio), no_face=no_face, providers=providers)
        except NoFaceError as e:
            raise ValueError(f"image: {e}") from e
        for note in getattr(face, "notes", []) or []:
            C.log.warning("Hallo face analysis: %s", note)
        s = int(face.size)
        ref = convert.frames_to_image(face.pixels.unsqueeze(0), "-1_1")
        lip = convert.level_mask_to_mask(face.lip_masks[0], s)
        expr = convert.level_mask_to_mask(face.face_masks[0], s)
        pose = convert.level_mask_to_mask(face.full_masks[0], s)
        region = (face.face_region[:1] > 0.5).float()
        dev = C.out_device()
        return io.NodeOutput(face, ref.to(dev), lip.to(dev), expr.to(dev), pose.to(dev),
                             region.to(dev, torch.float32))


NODES = [HalloFaceAnalysis]
