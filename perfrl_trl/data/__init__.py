"""Datasets: the PIE loader (real slow/fast pairs) and the bundled benchmark generator."""

from .benchmark import FAMILIES, build_benchmark, generate_problems
from .pie import DataError, FilterReport, filter_executable, load_pie

__all__ = [
    "FAMILIES",
    "DataError",
    "FilterReport",
    "build_benchmark",
    "filter_executable",
    "generate_problems",
    "load_pie",
]
