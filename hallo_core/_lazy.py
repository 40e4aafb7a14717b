"""Package re-exports that import their module on first use (PEP 562).

A package ``__init__`` that imported its modules eagerly would import torch with it, and the
CLI reads plain constants from these packages to print ``--help``.
"""

from __future__ import annotations

import importlib
from typing import Callable, Dict, Iterable, List, Tuple


def lazy_exports(package: str, exports: Dict[str, Iterable[str]]) -> Tuple[Callable, Callable]:
    """``(__getattr__, __dir__)`` for ``package``; ``exports`` maps a submodule (".embed") to its names."""
    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str):
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        setattr(importlib.import_module(package), name, value)
        return value

    def __dir__() -> List[str]:
        return sorted(set(vars(importlib.import_module(package))) | set(where))

    return __getattr__, __dir__


__all__ = ["lazy_exports"]
