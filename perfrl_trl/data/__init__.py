"""Datasets: the PIE loader (real slow/fast pairs), the bundled benchmark generator and their shared columns.

The loaders import `datasets` on first use, so that `perfrl_trl.data.columns` (the prompt format, used by
inference) stays cheap to import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .benchmark import FAMILIES, build_benchmark, generate_problems
    from .pie import DataError, FilterReport, filter_executable, load_pie

_LAZY = {
    **dict.fromkeys(("FAMILIES", "build_benchmark", "generate_problems"), "benchmark"),
    **dict.fromkeys(("DataError", "FilterReport", "filter_executable", "load_pie"), "pie"),
}

__all__ = [
    "FAMILIES",
    "DataError",
    "FilterReport",
    "build_benchmark",
    "filter_executable",
    "generate_problems",
    "load_pie",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
