"""Datasets: the PIE loader (real slow/fast pairs), the bundled benchmark generator, their shared columns,
splitting rows by problem, and pretraining data (a corpus of the installed Python sources, T5 span corruption).

The loaders import `datasets` on first use, so that `perfrl_trl.data.columns` (the prompt format, used by
inference) stays cheap to import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes

if TYPE_CHECKING:
    from .benchmark import FAMILIES, build_benchmark, generate_problems
    from .corpus import SourceFile, build_corpus, python_sources
    from .pie import DataError, FilterReport, filter_executable, load_pie, split_of
    from .span_corruption import (
        SpanCorruptionCollator,
        add_sentinels,
        chunk_tokens,
        noise_counts,
        span_corrupt,
        span_corruption_lengths,
    )
    from .splits import hash_split_by_problem, problem_unit

_LAZY = {
    **dict.fromkeys(("FAMILIES", "build_benchmark", "generate_problems"), ".benchmark"),
    **dict.fromkeys(("DataError", "FilterReport", "filter_executable", "load_pie", "split_of"), ".pie"),
    **dict.fromkeys(("problem_unit", "hash_split_by_problem"), ".splits"),
    **dict.fromkeys(("SourceFile", "build_corpus", "python_sources"), ".corpus"),
    **dict.fromkeys(
        (
            "SpanCorruptionCollator",
            "add_sentinels",
            "chunk_tokens",
            "noise_counts",
            "span_corrupt",
            "span_corruption_lengths",
        ),
        ".span_corruption",
    ),
}

__all__ = [
    "FAMILIES",
    "DataError",
    "FilterReport",
    "SourceFile",
    "SpanCorruptionCollator",
    "add_sentinels",
    "build_benchmark",
    "build_corpus",
    "chunk_tokens",
    "filter_executable",
    "generate_problems",
    "hash_split_by_problem",
    "load_pie",
    "noise_counts",
    "problem_unit",
    "python_sources",
    "span_corrupt",
    "span_corruption_lengths",
    "split_of",
]


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
