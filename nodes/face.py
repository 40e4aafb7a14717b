"""Face analysis node: any photo IMAGE -> Hallo face data (with the crop for paste-back), MASK previews and
a preview of every face found."""

from __future__ import annotations

import torch
from comfy_api.latest import io

from hallo_core.face.framing import FRAME_MODES

from . import common as C
from . import convert

PREVIEW_MAX_SIDE = 1280  # a 6000 px photo's preview would be a 300 MB IMAGE for a glance at the boxes

# Node-only options in the shared table's form, so their errors read like every other option's.
def _node_options():
    from hallo_core.checks import Option
    from hallo_core.face.crop import DEFAULT_MARGIN

    return {
        "face_index": Option(int, -1, 999, -1, hint="-1 takes the largest face, 0 the leftmost"),
        "margin": Option(float, 0.0, 2.0, DEFAULT_MARGIN, hint="the crop grows the face box by this share of its "
                                                               "side on every side"),
    }


def user_error(exc: Exception, where: str):
    """A face front end error as the UserError the CLI prints: the engine's words, ``where`` the node input.

    The engine writes "<what>: <how to fix>"; only the place differs from the CLI (``--image`` there).
    """
    from hallo_core.errors import UserError

    what, _, fix = str(exc).partition(": ")
    return UserError(what, where, fix)


def check_face_inputs(size=None, face_expand_ratio=None, face_index=None, margin=None):
    """None, or the UserError of the first widget out of range (same table and words as the CLI)."""
    from hallo_core.checks import check_option
    from hallo_core.errors import UserError

    table = _node_options()
    try:
        for name, value in (("size", size), ("face_expand_ratio", face_expand_ratio)):
            if value is not None:
                check_option(name, value, "node")
        for name, value in (("face_index", face_index), ("margin", margin)):
            if value is not None:
                check_option(name, value, "node", table)
    except UserError as e:
        return e
    return None


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
                io.Int.Input("size", default=512, min=64, max=2048, step=64,
                             tooltip="Working resolution (square, multiple of 64). Hallo is trained at 512."),
                io.Combo.Input("mode", options=list(FRAME_MODES), default="auto",
                               tooltip="auto: a square portrait the face fills goes in whole (upstream's path); "
                                       "any other photo is cropped around the chosen face. crop: always the "
                                       "square crop around the face. stretch: squash the whole image into a "
                                       "square (upstream; distorts non-square photos)."),
                io.Float.Input("face_expand_ratio", default=1.2, min=1.0, max=4.0, step=0.05,
                               tooltip="How far the face box extends beyond the face outline (upstream 1.2)."),
                io.Combo.Input("no_face", options=["error", "fallback"], default="error",
                               tooltip="No face found: stop with an error, or go on like upstream (zero identity "
                                       "embedding, whole image as the face box; results will be poor)."),
                io.Int.Input("face_index", default=-1, min=-1, max=999, optional=True,
                             tooltip="Which face to animate: -1 the largest; 0 the leftmost, 1 the next to its "
                                     "right, and so on. The faces_preview output shows the numbers."),
                io.Float.Input("margin", default=0.75, min=0.0, max=2.0, step=0.05, optional=True,
                               tooltip="Crop modes: the square crop grows the face box by this share of its side "
                                       "on every side (0.75: the face spans 40% of the crop, as in Hallo's "
                                       "training data)."),
            ],
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
        err = check_face_inputs(size, face_expand_ratio, face_index, margin)
        return True if err is None else str(err)

    @classmethod
    def execute(cls, face_models, image, size, mode, face_expand_ratio, no_face, face_index=-1,
                margin=0.75) -> io.NodeOutput:
        from hallo_core.face import BadImageError, FaceIndexError
        from hallo_core.pipeline.full_frame import frame_input

        err = check_face_inputs(size, face_expand_ratio, face_index, margin)
        if err is not None:  # validate_inputs sees only widget values; a linked value arrives here
            raise err
        if mode not in FRAME_MODES:
            raise user_error(ValueError(f"mode {mode!r} is not one of {', '.join(FRAME_MODES)}: pick one"), "mode")
        rgb = convert.image_to_rgb_uint8(image, 0)
        C.interrupted()
        # onnxruntime / mediapipe sessions are created and released inside hallo_core for this call.
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if face_models.onnx_device == "gpu" else None
        index = None if face_index is None or int(face_index) < 0 else int(face_index)
        try:
            # the CLI's framing call; the Paste Back node pastes, so a cropped auto stays a crop here
            framed = frame_input(rgb, face_models.models_dir, size=int(size), face_index=index, frame=mode,
                                 margin=float(margin), no_face=no_face, providers=providers, paste_back=False,
                                 face_expand_ratio=float(face_expand_ratio))
        except BadImageError as e:  # NoFaceError included
            raise user_error(e, "face_index" if isinstance(e, FaceIndexError) else "image") from None
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
