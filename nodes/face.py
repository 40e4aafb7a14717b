"""Face analysis node: any photo IMAGE -> Hallo face data (with the crop for paste-back), MASK previews and
a preview of every face found."""

from __future__ import annotations

import torch
from comfy_api.latest import io

from . import common as C
from . import convert
from . import options as O

PREVIEW_MAX_SIDE = 1280  # a 6000 px photo's preview would be a 300 MB IMAGE for a glance at the boxes
WIDGETS = ("size", "frame", "face_expand_ratio", "no_face", "face", "margin")  # hallo_core.options


def _preview(rgb) -> torch.Tensor:
    import cv2

    h, w = rgb.shape[:2]
    scale = min(1.0, PREVIEW_MAX_SIDE / float(max(h, w)))
    if scale < 1.0:
        rgb = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(rgb.copy()).float().div_(255.0).unsqueeze(0)


class HalloFaceAnalysis(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="Hallo_FaceAnalysis",
            display_name="Hallo Face Analysis",
            category=f"{C.CATEGORY}/face",
            description="Finds the faces in any photo, picks one, and builds what Hallo conditions on: lip, "
                        "expression and pose masks, the face region and the identity embedding. For a photo "
                        "that is not a square portrait it animates a square crop around the face; the face data "
                        "carries that crop, so 'Hallo Paste Back' can put the video back into the photo.",
            inputs=[
                C.HalloFaceModelsType.Input("face_models", tooltip="From 'Hallo Face Models Loader'."),
                io.Image.Input("image", tooltip="Any photo (any size; RGB, RGBA or grey). Only the first image "
                                                "of a batch is used."),
            ] + O.inputs(*WIDGETS, face={"optional": True}, margin={"optional": True}),
            outputs=[
                C.HalloFaceDataType.Output(display_name="face_data",
                                           tooltip="Masks, face region, identity embedding and the crop's place "
                                                   "in the photo, for Hallo Reference and Hallo Paste Back."),
                io.Image.Output(display_name="reference_image",
                                tooltip="The square the model animates, at the working resolution."),
                io.Mask.Output(display_name="lip_mask", tooltip="Lip region (blurred), working resolution."),
                io.Mask.Output(display_name="expression_mask",
                               tooltip="Face minus lips (blurred): where the expression branch acts."),
                io.Mask.Output(display_name="pose_mask", tooltip="Everything but the face: where head pose acts."),
                io.Mask.Output(display_name="face_region", tooltip="Hard face box fed to the face locator."),
                io.Image.Output(display_name="faces_preview",
                                tooltip="The photo with every face found boxed and numbered (0 = leftmost); the "
                                        "chosen one in green."),
            ],
        )

    @classmethod
    def validate_inputs(cls, size, face_expand_ratio, face_index=-1, margin=0.75) -> bool | str:
        return O.validate(size=size, face_expand_ratio=face_expand_ratio, face_index=face_index, margin=margin)

    @classmethod
    def execute(cls, face_models, image, size, mode, face_expand_ratio, no_face, face_index=-1,
                margin=0.75) -> io.NodeOutput:
        from hallo_core.errors import UserError
        from hallo_core.options import unset_to_none
        from hallo_core.pipeline.full_frame import frame_input

        # validate_inputs sees only widget values; a linked value arrives here
        v = O.checked(size=size, mode=mode, face_expand_ratio=face_expand_ratio, no_face=no_face,
                      face_index=face_index, margin=margin)
        size, face_expand_ratio, mode = v["size"], v["face_expand_ratio"], v["frame"]
        margin = v.get("margin", O.OPTIONS["margin"].default)
        rgb = convert.image_to_rgb_uint8(image, 0)
        C.interrupted()
        # onnxruntime / mediapipe sessions are created and released inside hallo_core for this call.
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if face_models.onnx_device == "gpu" else None
        index = unset_to_none("face", v.get("face"))
        try:
            # the CLI's framing call; the Paste Back node pastes, so a cropped auto stays a crop here
            framed = frame_input(rgb, face_models.models_dir, size=int(size), face_index=index, frame=mode,
                                 margin=float(margin), no_face=v["no_face"], providers=providers, paste_back=False,
                                 face_expand_ratio=float(face_expand_ratio))
        except UserError as e:  # NoFaceError and the other image and face errors included
            raise O.node_error(e) from None
        face = framed.face
        C.log.info("Hallo face analysis: %s", framed.summary())
        for note in face.notes or []:
            C.log.warning("Hallo face analysis: %s", note)
        s = int(face.size)
        ref = convert.frames_to_image(face.pixels.unsqueeze(0), "-1_1")
        lip = convert.level_mask_to_mask(face.lip_masks[0], s)
        expr = convert.level_mask_to_mask(face.face_masks[0], s)
        pose = convert.level_mask_to_mask(face.full_masks[0], s)
        region = (face.face_region[:1] > 0.5).float()
        dev = C.out_device()
        return io.NodeOutput(face, ref.to(dev), lip.to(dev), expr.to(dev), pose.to(dev),
                             region.to(dev, torch.float32), _preview(framed.framing.preview()).to(dev))


NODES = [HalloFaceAnalysis]
