"""Datasets: the PIE loader (real slow/fast pairs), the bundled benchmark generator, their shared columns,
splitting rows by problem, pretraining data (a corpus of the installed Python sources, T5 span corruption), and
SFT pairs from generic rewrites of generated scripts, each verified R4 in the sandbox.

The loaders import `datasets` on first use, so that `perfrl_trl.data.columns` (the prompt format, used by
inference) stays cheap to import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes

if TYPE_CHECKING:
    from .benchmark import FAMILIES, build_benchmark, generate_problems
    from .corpus import SourceFile, build_corpus, python_sources
    from .pie import DataError, FilterReport, filter_executable, load_pie, load_pie_programs, split_of
    from .rewrite_pairs import build_rewrite_pairs, candidate_rewrites
    from .rewrites import REWRITES, applicable_rewrites, apply_rewrites
    from .shapes import SHAPES, SlowProgram, generate_programs, with_expected_outputs
    from .span_corruption import (
        SpanCorruptionCollator,
        add_sentinels,
        chunk_tokens,
        noise_counts,
        span_corrupt,
        span_corruption_lengths,
    )
    from .splits import hash_split_by_problem, problem_unit, tests_only_split

_LAZY = {
    **dict.fromkeys(("FAMILIES", "build_benchmark", "generate_problems"), ".benchmark"),
    **dict.fromkeys(
        ("DataError", "FilterReport", "filter_executable", "load_pie", "load_pie_programs", "split_of"),
        ".pie",
    ),
    **dict.fromkeys(("problem_unit", "hash_split_by_problem", "tests_only_split"), ".splits"),
    **dict.fromkeys(("REWRITES", "applicable_rewrites", "apply_rewrites"), ".rewrites"),
    **dict.fromkeys(("build_rewrite_pairs", "candidate_rewrites"), ".rewrite_pairs"),
    **dict.fromkeys(("SHAPES", "SlowProgram", "generate_programs", "with_expected_outputs"), ".shapes"),
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
    "REWRITES",
    "SHAPES",
    "DataError",
    "FilterReport",
    "SlowProgram",
    "SourceFile",
    "SpanCorruptionCollator",
    "add_sentinels",
    "applicable_rewrites",
    "apply_rewrites",
    "build_benchmark",
    "build_corpus",
    "build_rewrite_pairs",
    "candidate_rewrites",
    "chunk_tokens",
    "filter_executable",
    "generate_problems",
    "generate_programs",
    "hash_split_by_problem",
    "load_pie",
    "load_pie_programs",
    "noise_counts",
    "problem_unit",
    "python_sources",
    "span_corrupt",
    "span_corruption_lengths",
    "split_of",
    "tests_only_split",
    "with_expected_outputs",
]


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
