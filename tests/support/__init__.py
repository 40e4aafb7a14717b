"""Test and benchmark support: tiny random-weight models and inputs. Nothing here is a real model.

- ``tiny_engine``: in-memory tiny HalloNet and VAE, random ``FaceData`` / ``AudioFeatures``
  (pipeline, node and speed tests; the CPU benchmarks).
- ``tiny_unets``: the UNet parts and inputs regenerated from the seeds of the stored upstream
  outputs in ``tests/data/upstream_hallo_tiny.pt`` (model and checkpoint tests).
- ``tiny_upscaler``: tiny temporal CodeFormer, ParseNet, RRDBNet and a RetinaFace that finds a
  face on a textured frame only (upscaler tests and benchmark).
- ``models_folder``: tiny models written in the official ``models/hallo`` layout (CLI end-to-end
  and ComfyUI tests).
- ``models_mirror``: that folder built once per test process, and private copy-on-damage views
  of it (the CLI end-to-end and bad-model-file tests).
- ``presets``: ``prepare_models``, ``fast_preset``, ``low_vram_preset`` (speed tests, benchmarks).

Submodules are imported on demand (they pull in diffusers, onnx or OpenCV). ComfyUI has its own
``tests`` package, so scripts run inside ComfyUI's Python load this package by path
(``tests/comfy_server.py``: ``load_support``); the modules import each other relatively.
"""
