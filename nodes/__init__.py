"""ComfyUI nodes of the Hallo / Hallo2 pack (V3 API). Imported only by ComfyUI, via the pack root.

``nodes.convert`` is plain torch and importable without ComfyUI; the other modules need ComfyUI's
``comfy_api`` and ``folder_paths``.
"""
