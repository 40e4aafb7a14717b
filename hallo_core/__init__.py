"""Hallo / Hallo2 audio-driven portrait animation engine.

Pure PyTorch: this package never imports ComfyUI, so it runs headless from the
command line (``python -m hallo_core``) and is testable on its own.
"""

__version__ = "0.1.0"
