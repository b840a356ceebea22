"""Splitting rows by problem: disjoint by problem, stable across orders, runs and fractions."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest
from datasets import Dataset

from perfrl_trl.data import hash_split_by_problem, problem_unit


@pytest.fixture(scope="module")
def rows():
    # Three rows per problem, as PIE has several slow/fast pairs of one problem.
    return Dataset.from_dict({"problem_id": [f"prob{i // 3}" for i in range(900)], "row": list(range(900))})


def test_problems_are_split_whole_and_disjoint(rows):
    labelled, tests_only = hash_split_by_problem(rows, 0.5, salt=0)
    assert sorted([*labelled["row"], *tests_only["row"]]) == list(range(900))
    assert not set(labelled["problem_id"]) & set(tests_only["problem_id"])
    for part in (labelled, tests_only):
        ids = list(part["problem_id"])
        assert all(ids.count(p) == 3 for p in set(ids))
        assert list(part["row"]) == sorted(part["row"])  # the row order is kept
    assert 100 <= len(set(tests_only["problem_id"])) <= 200  # 300 problems, about half (binomial sd 8.7)


def test_a_problems_side_depends_only_on_its_id_and_the_salt(rows):
    _, tests_only = hash_split_by_problem(rows, 0.5, salt=0)
    # Another order and other problems around it: the same problems are tests-only.
    shuffled = rows.shuffle(seed=3).select(range(450))
    _, again = hash_split_by_problem(shuffled, 0.5, salt=0)
    assert set(again["problem_id"]) == set(tests_only["problem_id"]) & set(shuffled["problem_id"])
    # Raising the fraction only moves problems into the tests-only part.
    _, more = hash_split_by_problem(rows, 0.7, salt=0)
    assert set(tests_only["problem_id"]) < set(more["problem_id"])
    _, other_salt = hash_split_by_problem(rows, 0.5, salt=1)
    assert set(other_salt["problem_id"]) != set(tests_only["problem_id"])
    assert (
        hash_split_by_problem(rows, 0.0)[1].num_rows == 0
        and hash_split_by_problem(rows, 1.0)[0].num_rows == 0
    )


def test_the_hash_is_sha256_of_the_id_not_pythons_hash():
    expected = int.from_bytes(hashlib.sha256(b"7:bench/sum_formula/0").digest()[:8], "big") / 2**64
    assert problem_unit("bench/sum_formula/0", salt=7) == expected
    # A fresh interpreter with another string-hash seed computes the same number.
    code = (
        "from perfrl_trl.data import problem_unit; print(repr(problem_unit('bench/sum_formula/0', salt=7)))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert float(out.stdout) == expected


def test_bad_input_is_named(rows):
    with pytest.raises(ValueError, match="fraction"):
        hash_split_by_problem(rows, 1.5)
    with pytest.raises(ValueError, match="problem_id"):
        hash_split_by_problem(rows.remove_columns("problem_id"), 0.5)
