"""Any photo in, full-frame video out: the glue between face framing, the sampler's sink and the file.

The framing vocabulary, one for the CLI (``--frame``), the face node (``mode``) and the engine
(:data:`FRAME_MODES`), says what the user asks for:

* ``auto``: a square photo the face fills goes to the model whole (upstream's path, the very
  same ``prepare_face`` call); any other photo is cropped around the chosen face;
* ``crop``: always the square crop around the chosen face;
* ``stretch``: upstream's squash of the whole photo into the square, whatever its aspect.

:func:`frame_input` runs before any generation model loads: it decodes and checks the
photo, finds and picks the face, prepares what the model animates and resolves the request
into one of :data:`RESOLVED_MODES`, what the video shows:

* ``whole``: the whole picture (``stretch``, or ``auto`` on a square photo the face fills);
* ``crop``: the square crop around the face is the video;
* ``paste``: the crop is animated and every clip is pasted back into the photo as it streams
  (:class:`hallo_core.io.paste_back.PasteBackSink`), at the photo's aspect. ``auto`` resolves
  to it on a photo that is not animated whole, unless the host pastes back itself
  (``paste_back=False``: the face node, whose Paste Back node comes later in the graph).

The resume checkpoint keeps what the sampler keeps (working-size motion frames and the RNG
state); the paste-back geometry is folded into its hash, so a resume with another output
size or crop is refused instead of mixing frame sizes in one file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence, Union

from ..face.defaults import DEFAULT_FEATHER, DEFAULT_MARGIN, DEFAULT_MAX_SIDE, FRAME_MODES

if TYPE_CHECKING:  # imported where used: the CLI reads FRAME_MODES for --help without numpy or torch
    from ..face.crop import CropBox
    from ..io.paste_back import FramePaster

RESOLVED_MODES = ("whole", "crop", "paste")


@dataclass
class FramedInput:
    """The checked photo, the chosen face, the prepared FaceData and how frames are framed."""

    framing: object  # hallo_core.face.FaceFraming
    face: object  # hallo_core.types.FaceData, what the model animates
    mode: str  # one of RESOLVED_MODES
    paster: Optional[FramePaster]  # set in "paste" mode

    def sink(self, inner):
        """The sampler's sink: ``inner`` itself, or the paste-back wrapper around it."""
        if self.paster is None:
            return inner
        from ..io.paste_back import PasteBackSink

        return PasteBackSink(inner, self.paster)

    @property
    def crop(self) -> Optional[CropBox]:
        return None if self.mode == "whole" else self.framing.crop

    @property
    def resume_tag(self) -> str:
        """Empty for whole/crop (their frames are the sampler's), else the paste geometry."""
        if self.paster is None:
            return ""
        return f"|paste {self.paster.width}x{self.paster.height} crop {self.paster.crop.box} rect {self.paster.rect}"

    def summary(self) -> str:
        fr = self.framing
        n = len(fr.faces)
        if n == 0:
            return (f"no face found ({fr.detector}): the whole {fr.source_size[0]}x{fr.source_size[1]} image is "
                    "animated with no face (the no-face fallback: zero identity, the whole image as the face "
                    "region)")
        head = f"{n} face{'s' if n != 1 else ''} found ({fr.detector}), animating face {fr.index} (0 = leftmost)"
        if self.mode == "whole":
            return f"{head}; whole {fr.source_size[0]}x{fr.source_size[1]} image"
        box = fr.crop.box
        tail = (f"; pasted back into {self.paster.width}x{self.paster.height}" if self.paster is not None
                else "; square crop video")
        return f"{head}; crop box {box}{tail}"

    def sidecar(self, source: Union[str, os.PathLike, None] = None) -> dict:
        """What a later ``hallo upscale --paste-into`` needs, plus what was chosen (JSON-ready)."""
        fr = self.framing
        return {
            "source": os.fspath(source) if source is not None else None,
            "source_size": list(fr.source_size),
            "mode": self.mode,
            "detector": fr.detector,
            "faces": [[round(float(v), 1) for v in f.box] for f in fr.faces],
            "face_index": fr.index,
            "crop_box": list(fr.crop.box) if self.crop is not None else None,
            "output_size": list(self.paster.size) if self.paster is not None else None,
        }


def frame_input(image, face_models: Optional[Union[str, os.PathLike]], size: int = 512,
                face_index: Optional[int] = None, frame: str = "auto", margin: float = DEFAULT_MARGIN,
                max_side: int = DEFAULT_MAX_SIDE, detector: str = "auto",
                feather: float = DEFAULT_FEATHER, no_face: str = "error",
                providers: Optional[Sequence[str]] = None, paste_back: bool = True,
                **prepare_kw) -> FramedInput:
    """Check ``image`` (a path or pixels), choose the face and prepare what the model animates.

    ``frame``: one of :data:`FRAME_MODES` (see the module's docstring). ``detector``: "auto"
    (SCRFD when ``face_models`` holds it, else mediapipe), "scrfd" or "mediapipe".
    ``providers``: onnxruntime providers for SCRFD and ArcFace (None: CPU). ``paste_back``:
    False resolves a cropped ``auto`` to "crop" instead of "paste" (the host pastes back).
    ``no_face``: "error" raises NoFaceError; "fallback" animates a picture without a usable face
    as upstream does (zero identity embedding; no landmarks: the whole image is the face region),
    the whole picture when no face is found at all. A face asked for by ``face_index`` that is
    not there stays an error either way.
    Raises :class:`hallo_core.face.BadImageError` subclasses with a message for the user.
    """
    from ..face import frame_face, load_image, prepare_framed_face
    from ..face.errors import NoFaceError
    from ..face.preprocess import FaceModelPaths

    if frame not in FRAME_MODES:
        raise ValueError(f"frame must be one of {FRAME_MODES}, not {frame!r}")
    if no_face not in ("error", "fallback"):
        raise ValueError(f"no_face must be 'error' or 'fallback', not {no_face!r}")
    if isinstance(image, (str, os.PathLike)):
        image = load_image(image)
    prepare_kw["providers"] = providers
    det_path = FaceModelPaths.from_dir(face_models).detector if face_models is not None else None
    try:
        framing = frame_face(image, detector_path=det_path, face_index=face_index, margin=margin, backend=detector,
                             providers=providers)
    except NoFaceError:
        if no_face != "fallback" or face_index is not None:  # a chosen face that is not there stays an error
            raise
        return _faceless(image, face_models, size, detector, prepare_kw)
    prepare_kw["no_face"] = no_face
    if frame == "stretch" and face_index is not None:
        # the whole picture's landmarks would otherwise follow the largest face, not the chosen one
        prepare_kw.setdefault("face_hint", framing.face.box)
    face = prepare_framed_face(framing, face_models, size=size, frame=frame, **prepare_kw)
    if frame == "stretch" or (frame == "auto" and framing.faithful):
        return FramedInput(framing, face, "whole", None)
    if frame == "crop" or not paste_back:
        return FramedInput(framing, face, "crop", None)
    from ..io.paste_back import FramePaster

    paster = FramePaster(framing.rgb, framing.crop, max_side=max_side, feather=feather)
    return FramedInput(framing, face, "paste", paster)


def _faceless(image, face_models, size: int, detector: str, prepare_kw: dict) -> FramedInput:
    """No face anywhere: the whole picture, as upstream's fallback does (there is nothing to crop around)."""
    from ..face import FaceFraming, check_image, prepare_face

    rgb = check_image(image)
    face = prepare_face(rgb, face_models, size=size, no_face="fallback", **prepare_kw)
    return FramedInput(FaceFraming(rgb, [], -1, None, False, detector), face, "whole", None)


def sidecar_path(video: Union[str, os.PathLike]) -> Path:
    """``OUT.mp4`` -> ``OUT.mp4.framing.json``."""
    p = Path(video)
    return p.with_name(p.name + ".framing.json")


def write_sidecar(video, framed: FramedInput, source=None) -> Path:
    path = sidecar_path(video)
    path.write_text(json.dumps(framed.sidecar(source), indent=2))
    return path


def paster_from_sidecar(sidecar: Union[str, os.PathLike], image: Union[str, os.PathLike, None] = None,
                        max_side: int = DEFAULT_MAX_SIDE, feather: float = DEFAULT_FEATHER) -> FramePaster:
    """A FramePaster for a square crop video made by ``generate --frame crop``.

    ``image`` overrides the sidecar's source path (it must have the recorded size). The
    crop frames may be any size (e.g. upscaled): each is resized to the crop's place.
    """
    from ..errors import ImageError, UserError
    from ..face import check_image, load_image
    from ..face.crop import CropBox
    from ..io.paste_back import FramePaster

    fix = "give the photo and crop record of a `generate --frame crop` run"
    try:
        meta = json.loads(Path(sidecar).read_text())
    except FileNotFoundError:
        raise UserError(f"the crop record {sidecar} does not exist", "framing", fix) from None
    except (OSError, ValueError) as e:
        raise UserError(f"the crop record {sidecar} cannot be read ({e})", "framing", fix) from None
    if meta.get("mode") == "speakers":
        raise UserError(f"{sidecar} records a video that holds {len(meta.get('speakers') or [])} speakers' crops, "
                        "already pasted into the photo", "framing", fix)
    if not meta.get("crop_box"):
        raise UserError(f"{sidecar} records a video of the whole image ({meta.get('mode')} mode): there is no crop "
                        "to paste back", "framing", fix)
    src = image if image is not None else meta.get("source")
    if not src:
        raise UserError(f"{sidecar} names no source image", "paste_into", "give the photo after {=paste_into}")
    try:
        rgb = check_image(load_image(src))
    except ImageError as e:  # the photo is given to upscale as --paste-into, not as --image
        raise UserError(e.what, "paste_into", e.fix) from None
    crop = CropBox.from_box(meta["crop_box"], meta["source_size"])
    if (rgb.shape[1], rgb.shape[0]) != tuple(meta["source_size"]):
        raise UserError(f"{src} is {rgb.shape[1]}x{rgb.shape[0]}, but the crop was made for "
                        f"{meta['source_size'][0]}x{meta['source_size'][1]}", "paste_into", fix)
    return FramePaster(rgb, crop, max_side=max_side, feather=feather)
