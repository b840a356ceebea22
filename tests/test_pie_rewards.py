"""The reward on real PIE programs (../shared/pie): almost never "faster than itself", and real targets detected.

Skipped cleanly when the data is not beside the repository.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from perfrl_trl.data.pie import read_tests
from perfrl_trl.execution import ExecutionConfig
from perfrl_trl.rewards import UnitTestRewardFunction

PIE = Path(__file__).resolve().parents[1].parent / "shared" / "pie"
pytestmark = [
    pytest.mark.pie,
    pytest.mark.skipif(not (PIE / "py_test_pairs.jsonl").is_file(), reason="no ../shared/pie"),
]


@pytest.fixture(scope="module")
def pairs():
    rows = [json.loads(line) for line in (PIE / "py_test_pairs.jsonl").read_text().splitlines()]
    sample = random.Random(0).sample(rows, 20)
    return [(r["input"], r["target"], read_tests(PIE / "public_test_cases", r["problem_id"])) for r in sample]


@pytest.fixture(scope="module")
def reward():
    return UnitTestRewardFunction(execution_config=ExecutionConfig(timeout_s=5.0))


def test_slow_program_against_itself_is_almost_never_r4(pairs, reward):
    # A trailing comment makes the candidate a different string, so it is really re-run and re-timed.
    details = reward.score(
        [slow + "\n# copy\n" for slow, _, _ in pairs], [t for *_, t in pairs], [s for s, _, _ in pairs]
    )
    passing = [d for d in details if d.passed]
    assert len(passing) >= 10
    # The rule bounds false R4 by alpha (5%) per judgement, not at zero: with all 20 judged at once on two
    # busy workers, one copy came out R4 in 3 of 49 runs of this test (before and after the decisive-win
    # rule alike), 0.3% a judgement. Two or more would take a rate many times that; the paper's one-run
    # rule calls about half of them faster.
    false_r4 = [(d.speedup, d.runtime) for d in details if d.tier == "R4"]
    assert len(false_r4) <= 1, false_r4


def test_real_targets_are_mostly_r4(pairs, reward):
    details = reward.score(
        [target for _, target, _ in pairs], [t for *_, t in pairs], [s for s, _, _ in pairs]
    )
    passing = [d for d in details if d.passed]
    r4 = [d for d in passing if d.tier == "R4"]
    # PIE's targets are 1.25x+ faster by PIE's own (larger) tests; on the public tests most stay detectable.
    assert len(r4) > len(passing) / 2, (len(r4), len(passing))
