"""Datasets: the PIE loader (real slow/fast pairs) and the bundled benchmark generator."""

from .pie import DataError, FilterReport, filter_executable, load_pie

__all__ = ["DataError", "FilterReport", "filter_executable", "load_pie"]
