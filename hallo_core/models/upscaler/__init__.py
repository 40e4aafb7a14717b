"""Networks of Hallo2's temporal upscaler (no ComfyUI imports).

- :class:`TemporalCodeFormer` (``hallo2/net_g.pth``): ``.inference(x[b,f,3,512,512] in [-1,1], w, adain)``
- :class:`RetinaFace` + :func:`detect_faces` (``facelib/detection_Resnet50_Final.pth``)
- :class:`ParseNet` (``facelib/parsing_parsenet.pth``)
- :class:`RRDBNet` + :func:`tiled_upscale` / :func:`enhance` (``RealESRGAN_x2plus.pth``)

Loaders live in :mod:`hallo_core.io.upscaler_weights`.
"""

from ..._lazy import lazy_exports

_EXPORTS = {
    ".codeformer": ("TemporalCodeFormer", "adaptive_instance_normalization", "calc_mean_std"),
    ".parsenet": ("ParseNet",),
    ".retinaface": ("RetinaFace", "decode", "decode_landm", "detect_faces", "nms", "prior_boxes"),
    ".rrdbnet": ("RRDBNet", "enhance", "tiled_upscale"),
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = [name for names in _EXPORTS.values() for name in names]
