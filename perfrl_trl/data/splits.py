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


def tests_only_split(
    train: datasets.Dataset, tests_only_fraction: float, rl_prompts: int, seed: int
) -> tuple[datasets.Dataset, datasets.Dataset, datasets.Dataset]:
    """The SFT rows, the tests-only rows and the RL prompts of a train split, as the recipes use them.

    With a tests-only fraction, the problems are split by [`hash_split_by_problem`] (salted with `seed`): SFT
    sees the labelled part only, and the RL prompts are up to `rl_prompts` rows of the tests-only part, shuffled,
    each once, with ``target_code`` None, so that RL learns from the tests and the timing alone. Without, SFT
    sees all of train and the RL prompts are a shuffled prefix of it, targets included.

    Args:
        train (`datasets.Dataset`): Rows with ``problem_id`` and ``target_code`` columns.
        tests_only_fraction (`float`): Expected share of problems whose targets are withheld, in [0, 1].
        rl_prompts (`int`): At most this many RL prompts.
        seed (`int`): Salts the split and seeds the shuffle.

    Returns:
        `(labelled, tests_only, rl)`.

    Example:
        ```python
        >>> from datasets import Dataset
        >>> rows = Dataset.from_dict({"problem_id": [f"p{i}" for i in range(40)], "target_code": ["x"] * 40})
        >>> labelled, tests_only, rl = tests_only_split(rows, 0.5, rl_prompts=4, seed=0)
        >>> len(rl), set(rl["target_code"])
        (4, {None})
        ```
    """
    if rl_prompts < 1:
        raise ValueError(f"tests_only_split: rl_prompts must be >= 1, got {rl_prompts!r}")
    if "target_code" not in train.column_names:
        raise ValueError(f"tests_only_split: no target_code column (columns: {train.column_names})")
    if tests_only_fraction > 0:
        labelled, tests_only = hash_split_by_problem(train, tests_only_fraction, salt=seed)
        if len(labelled) == 0 or len(tests_only) == 0:
            raise ValueError(
                f"tests_only_split: a tests-only fraction of {tests_only_fraction} left {len(labelled)} labelled "
                f"and {len(tests_only)} tests-only rows of {len(train)}; use more problems"
            )
        rl = tests_only.shuffle(seed=seed).select(range(min(rl_prompts, len(tests_only))))
        feature = rl.features["target_code"]
        rl = rl.remove_columns("target_code").add_column("target_code", [None] * len(rl), feature=feature)
        return labelled, tests_only, rl
    # Splits are ordered by family: shuffle before taking a prefix, so that every family is represented.
    return train, train.select([]), train.shuffle(seed=seed).select(range(min(rl_prompts, len(train))))
