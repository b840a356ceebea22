"""Splitting a dataset by problem: every row of a problem lands on the same side, whatever the row order."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import datasets


def problem_unit(problem_id: str, salt: str | int = "") -> float:
    """A fixed number in [0, 1) for a problem: the first 8 bytes of SHA-256 of ``"{salt}:{problem_id}"``.

    Python's `hash` of a string changes from one interpreter to the next (`PYTHONHASHSEED`); this does not.

    Example:
        ```python
        >>> problem_unit("bench/sum_formula/0") == problem_unit("bench/sum_formula/0")
        True
        >>> 0 <= problem_unit("bench/sum_formula/0", salt=1) < 1
        True
        ```
    """
    digest = hashlib.sha256(f"{salt}:{problem_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def hash_split_by_problem(
    dataset: datasets.Dataset, fraction: float, salt: str | int = ""
) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Split rows into two parts by a fixed hash of their ``problem_id``: about `fraction` of the problems go
    to the second part.

    A problem's side depends only on its id and `salt` (see [`problem_unit`]), so all rows of a problem (PIE
    has several pairs per problem) stay together, the split does not depend on the row order or on which other
    problems are present, and raising `fraction` only moves problems into the second part. The share is
    `fraction` in expectation, not exactly; rows keep their order within each part. (PIE's
    train/validation/test split, `perfrl_trl.data.pie.split_by_problem`, sizes its parts exactly instead,
    from a seeded shuffle of the distinct ids, so a problem's side there depends on the other problems.)

    Args:
        dataset (`datasets.Dataset`): Rows with a ``problem_id`` column.
        fraction (`float`): Expected share of problems in the second part, in [0, 1].
        salt (`str` or `int`, *optional*): Mixed into the hash; another salt gives another split.

    Returns:
        `(first, second)`: e.g. the labelled rows and the tests-only rows whose targets are withheld.

    Example:
        ```python
        >>> from datasets import Dataset
        >>> rows = Dataset.from_dict({"problem_id": [f"p{i // 2}" for i in range(200)], "x": range(200)})
        >>> labelled, tests_only = hash_split_by_problem(rows, 0.5, salt=0)
        >>> len(labelled) + len(tests_only), set(labelled["problem_id"]) & set(tests_only["problem_id"])
        (200, set())
        ```
    """
    if not 0 <= fraction <= 1:
        raise ValueError(f"hash_split_by_problem: fraction must be in [0, 1], got {fraction!r}")
    if "problem_id" not in dataset.column_names:
        raise ValueError(f"hash_split_by_problem: no problem_id column (columns: {dataset.column_names})")
    second = [problem_unit(str(pid), salt) < fraction for pid in dataset["problem_id"]]
    return (
        dataset.select([i for i, s in enumerate(second) if not s]),
        dataset.select([i for i, s in enumerate(second) if s]),
    )
