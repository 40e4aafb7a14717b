"""Networks of Hallo2's temporal upscaler (no ComfyUI imports).

- :class:`TemporalCodeFormer` (``hallo2/net_g.pth``): ``.inference(x[b,f,3,512,512] in [-1,1], w, adain)``
- :class:`RetinaFace` + :func:`detect_faces` (``facelib/detection_Resnet50_Final.pth``)
- :class:`ParseNet` (``facelib/parsing_parsenet.pth``)
- :class:`RRDBNet` + :func:`tiled_upscale` / :func:`enhance` (``RealESRGAN_x2plus.pth``)

Loaders live in :mod:`hallo_core.io.upscaler_weights`.
"""
from .codeformer import TemporalCodeFormer, adaptive_instance_normalization, calc_mean_std
from .parsenet import ParseNet
from .retinaface import RetinaFace, decode, decode_landm, detect_faces, nms, prior_boxes
from .rrdbnet import RRDBNet, enhance, tiled_upscale

__all__ = [
    "TemporalCodeFormer", "adaptive_instance_normalization", "calc_mean_std", "ParseNet", "RetinaFace",
    "decode", "decode_landm", "detect_faces", "nms", "prior_boxes", "RRDBNet", "enhance", "tiled_upscale",
]
