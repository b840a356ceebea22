"""Datasets: the PIE loader (real slow/fast pairs), the bundled benchmark generator, their shared columns and
splitting rows by problem.

The loaders import `datasets` on first use, so that `perfrl_trl.data.columns` (the prompt format, used by
inference) stays cheap to import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes

if TYPE_CHECKING:
    from .benchmark import FAMILIES, build_benchmark, generate_problems
    from .pie import DataError, FilterReport, filter_executable, load_pie, split_of
    from .splits import hash_split_by_problem, problem_unit

_LAZY = {
    **dict.fromkeys(("FAMILIES", "build_benchmark", "generate_problems"), ".benchmark"),
    **dict.fromkeys(("DataError", "FilterReport", "filter_executable", "load_pie", "split_of"), ".pie"),
    **dict.fromkeys(("problem_unit", "hash_split_by_problem"), ".splits"),
}

__all__ = [
    "FAMILIES",
    "DataError",
    "FilterReport",
    "build_benchmark",
    "filter_executable",
    "generate_problems",
    "hash_split_by_problem",
    "load_pie",
    "problem_unit",
    "split_of",
]


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
