"""Hallo2's high-resolution stage around the networks: face alignment, temporal windows,
background upscaling, paste-back, streamed video upscaling (no ComfyUI import).

Main entry points:

- :func:`upscale_frames` (RGB frames in, upscaled RGB uint8 frames out, streamed window by window)
- :func:`upscale_to_file` (frames in, an mp4 out), :func:`upscale_video` (file -> file, audio copied)
- :func:`load_upscaler_models` (upstream's weight files)
"""

from .background import rrdb_upscaler, tensor_upscaler, upscale_background
from .file_upscale import UpscalerModels, load_upscaler_models, upscale_to_file, upscale_video
from .video_upscale import UpscaleReport, upscale_frames
from .windows import Window, iter_windows, window_schedule

__all__ = [
    "rrdb_upscaler", "tensor_upscaler", "upscale_background", "UpscalerModels",
    "load_upscaler_models", "upscale_to_file", "upscale_video", "UpscaleReport", "upscale_frames",
    "Window", "iter_windows", "window_schedule",
]
