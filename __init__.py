"""Hallo / Hallo2 audio-driven portrait animation for ComfyUI (V3 node pack).

Importing this package downloads nothing and writes nothing: it registers ``models/hallo`` with
folder_paths, makes the server send the ``.md`` help pages as text, and lists the nodes. Heavy libraries load only when a node runs.
"""

import importlib.util
import logging
import os
import sys

WEB_DIRECTORY = "./web"

_PACK_DIR = os.path.dirname(os.path.abspath(__file__))


def _expose_hallo_core() -> None:
    """Make this repository's ``hallo_core`` importable by name.

    ComfyUI imports a pack by file path, so the engine package beside this file is not on sys.path.
    Registering just that package (rather than adding the pack folder to sys.path) keeps the pack's
    other top-level folders (nodes/, tests/) from shadowing ComfyUI's own modules.
    """
    core_dir = os.path.join(_PACK_DIR, "hallo_core")
    loaded = sys.modules.get("hallo_core")
    if loaded is not None:
        if os.path.dirname(os.path.abspath(getattr(loaded, "__file__", "") or "")) != core_dir:
            logging.warning("Hallo: another hallo_core is already imported from %s; using it",
                            getattr(loaded, "__file__", "?"))
        return
    spec = importlib.util.spec_from_file_location(
        "hallo_core", os.path.join(core_dir, "__init__.py"), submodule_search_locations=[core_dir])
    module = importlib.util.module_from_spec(spec)
    sys.modules["hallo_core"] = module
    spec.loader.exec_module(module)


def _serve_markdown_as_text() -> None:
    """Map ``.md`` to text/markdown where nothing maps it yet, so the help pages in web/docs are served
    as text. aiohttp's static files take their type from aiohttp's own table (built without the system
    mime.types), which on Python before 3.13 has no ``.md`` and answers application/octet-stream."""
    import mimetypes

    tables = [mimetypes]
    try:
        from aiohttp import web_fileresponse

        if hasattr(getattr(web_fileresponse, "CONTENT_TYPES", None), "add_type"):
            tables.append(web_fileresponse.CONTENT_TYPES)
    except ImportError:
        pass
    for table in tables:
        if table.guess_type("help.md")[0] is None:
            table.add_type("text/markdown", ".md")


_expose_hallo_core()
_serve_markdown_as_text()


async def comfy_entrypoint():
    from .nodes.extension import setup

    return setup()


__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
