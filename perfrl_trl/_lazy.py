"""Lazy package attributes (PEP 562): a submodule is imported only when one of its names is first used."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_attributes(
    package: str, table: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The `__getattr__` and `__dir__` of a package whose names in `table` load on first use.

    Args:
        package: The package's `__name__`.
        table: Attribute name to the module that defines it, absolute or relative to `package`
            (`".arithmetic"`).

    Example:
        ```python
        __getattr__, __dir__ = lazy_attributes(__name__, {"load_pie": ".pie"})
        ```
    """

    def __getattr__(name: str) -> Any:
        if name in table:
            return getattr(importlib.import_module(table[name], package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        module = sys.modules[package]
        return sorted({*vars(module), *getattr(module, "__all__", ())})

    return __getattr__, __dir__
