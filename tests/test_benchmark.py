"""Tests of the bundled optimisation benchmark (perfrl_trl.data.benchmark)."""

from __future__ import annotations

import pytest

from perfrl_trl.data.benchmark import (
    DEFAULT_HELDOUT_FAMILIES,
    DEFAULT_PREFIX,
    FAMILIES,
    build_benchmark,
    generate_problems,
    split_problems,
    to_dataset,
    validate_problems,
)
from perfrl_trl.data.benchmark.build import TARGET_KINDS
from perfrl_trl.data.columns import CORE_COLUMNS
from perfrl_trl.data.pie import FEATURES as PIE_FEATURES

N_DISTINCT = 4  # problems generated per family in the shared fixture
MAX_BEST_NOT_R4 = 2  # families whose sampled best solution may miss R4 (timing noise on a busy machine)
COLUMNS = {
    "prompt",
    "input_code",
    "target_code",
    "problem_id",
    "tests",
    "family",
    "best_code",
    "best_speedup",
    "target_speedup",
    "target_kind",
}


@pytest.fixture(scope="module")
def problems() -> list[dict]:
    return generate_problems(n_per_family=N_DISTINCT, seed=0)


@pytest.fixture(scope="module")
def sample(problems) -> list[dict]:
    """One problem per family, with at most two tests, for the executor checks."""
    first = {}
    for p in problems:
        first.setdefault(p["family"], p)
    return [{**p, "tests": p["tests"][:2]} for p in first.values()]


@pytest.fixture(scope="module")
def executor():
    from perfrl_trl.execution import ExecutionConfig, Executor

    with Executor(ExecutionConfig(n_trials=3, timeout_s=10.0)) as ex:
        yield ex


def test_registry_has_enough_families():
    assert len(FAMILIES) >= 30
    assert set(DEFAULT_HELDOUT_FAMILIES) <= set(FAMILIES)
    assert len({f.category for f in FAMILIES.values()}) >= 5


def test_every_family_yields_distinct_valid_problems(problems):
    by_family: dict[str, list[dict]] = {}
    for p in problems:
        by_family.setdefault(p["family"], []).append(p)
    assert set(by_family) == set(FAMILIES)
    for fam, items in by_family.items():
        assert len(items) == N_DISTINCT
        assert len({p["input_code"] for p in items}) == N_DISTINCT, f"{fam}: duplicate slow programs"
        assert len({p["problem_id"] for p in items}) == N_DISTINCT
        for p in items:
            assert p["problem_id"].startswith(f"bench/{fam}/")
            assert p["target_kind"] in TARGET_KINDS
            for role in ("input_code", "target_code", "best_code"):
                compile(p[role], p["problem_id"], "exec")
            assert p["input_code"] != p["best_code"]
            assert 2 <= len(p["tests"]) <= 4
            for t in p["tests"]:
                assert set(t) == {"input", "output"}
                assert t["output"].strip(), f"{p['problem_id']}: empty expected output"
                assert len(t["input"]) < 200_000


def test_generation_is_deterministic_and_seeded(problems):
    again = generate_problems(n_per_family=1, seed=0)
    first = {p["family"]: p for p in problems if p["problem_id"].endswith("/0")}
    for p in again:
        assert p == first[p["family"]]
    other = generate_problems(n_per_family=1, seed=1)
    same = [p["family"] for p in other if p["input_code"] == first[p["family"]]["input_code"]]
    assert not same, f"seed 1 reproduced seed 0 for {same}"


def test_some_targets_are_not_optimal(problems):
    share = sum(p["target_kind"] != "optimal" for p in problems) / len(problems)
    assert 0.2 <= share <= 0.6, share


def test_splits_are_clean(problems):
    heldout = ("bit_count", "lis")
    splits = split_problems(problems, seed=0, heldout_families=heldout, val_frac=0.25, test_frac=0.25)
    ids = {name: {p["problem_id"] for p in items} for name, items in splits.items()}
    names = list(ids)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not ids[a] & ids[b], f"{a} and {b} share problems"
    assert sum(map(len, ids.values())) == len(problems)
    assert {p["family"] for p in splits["test_ood"]} == set(heldout)
    for name in ("train", "validation", "test"):
        assert not {p["family"] for p in splits[name]} & set(heldout)
        assert splits[name]
    assert split_problems(problems, seed=0, heldout_families=heldout, val_frac=0.25, test_frac=0.25) == splits


def test_build_benchmark_columns():
    fams = ["sum_formula", "pair_count", "bit_count", "stdin_lines"]
    ds = build_benchmark(n_per_family=4, seed=0, heldout_families=("bit_count",), families=fams)
    assert set(ds) == {"train", "validation", "test", "test_ood"}
    for split in ds.values():
        assert set(split.column_names) >= COLUMNS
        # the same contract, with the same types, as the PIE loader's
        assert {k: split.features[k] for k in CORE_COLUMNS} == {k: PIE_FEATURES[k] for k in CORE_COLUMNS}
    row = ds["train"][0]
    assert row["prompt"] == DEFAULT_PREFIX + row["input_code"]
    assert row["problem_id"].startswith("bench/")
    assert isinstance(row["tests"], list) and set(row["tests"][0]) == {"input", "output"}
    assert set(ds["test_ood"]["family"]) == {"bit_count"}
    assert "bit_count" not in set(ds["train"]["family"])
    assert len(ds["train"]) + len(ds["validation"]) + len(ds["test"]) == 12
    ds2 = to_dataset(generate_problems(1, seed=0, families=["sum_formula"]), prefix="Optimise:\n")
    assert ds2[0]["prompt"].startswith("Optimise:\n")


@pytest.mark.slow
def test_best_and_target_against_slow_with_executor(sample, executor):
    # Best solutions are timed against the slow program (whose correctness run checks it against the tests);
    # targets only need to pass, so they get a correctness run alone.
    best = executor.judge_many([(p["best_code"], p["tests"], p["input_code"]) for p in sample])
    targets = [p for p in sample if p["target_code"] != p["best_code"]]
    target_v = executor.judge_many([(p["target_code"], p["tests"], None) for p in targets], time_it=False)
    broken = {p["family"]: (v.status, v.error, v.baseline_status) for p, v in zip(sample, best)}
    broken = {f: b for f, b in broken.items() if b[0] != "passed" or b[2] != "passed"}
    broken.update(
        {f"{p['family']} (target)": (v.status, v.error) for p, v in zip(targets, target_v) if not v.passed}
    )
    assert not broken, f"slow/target/best disagree or fail: {broken}"
    not_r4 = {p["family"]: round(v.speedup or 0.0, 2) for p, v in zip(sample, best) if v.tier < 4}
    assert len(not_r4) <= MAX_BEST_NOT_R4, f"best solution not R4 against slow: {not_r4}"


@pytest.mark.slow
def test_validate_problems_fills_measurements(sample, executor):
    # A few cheap families; their best solutions' verdicts are cached by the previous test when run in order.
    subset = [
        p for p in sample if p["family"] in ("sum_formula", "pow_mod", "max_subarray", "palindrome_count")
    ]
    kept = validate_problems(subset, executor=executor)
    assert len(kept) >= len(subset) - 1
    for p in kept:
        assert p["best_speedup"] >= 1.10
        assert p["target_kind"] in TARGET_KINDS
        assert p["target_speedup"] is not None
        if p["target_code"] == p["best_code"]:
            assert p["target_kind"] == "optimal" and p["target_speedup"] == p["best_speedup"]
        else:
            assert p["target_kind"] != "optimal" or p["best_speedup"] <= 1.5 * p["target_speedup"]


def test_default_lengths_keep_whole_programs():
    """The recipes' default max_completion_length (256) keeps >= 99% of targets and best solutions with their
    EOS, and every prompt within max_prompt_length (256), so SFT never teaches the model not to stop."""
    from perfrl_trl.models import load_tokenizer

    tok = load_tokenizer()
    problems = generate_problems(n_per_family=12, seed=0)
    for key in ("target_code", "best_code"):
        lengths = [len(tok(p[key], add_special_tokens=False)["input_ids"]) + 1 for p in problems]
        assert sum(n <= 256 for n in lengths) / len(lengths) >= 0.99, key
    prompts = to_dataset(problems)["prompt"]
    assert max(len(tok(p)["input_ids"]) for p in prompts) <= 256


def test_pretraining_problems_never_meet_the_evaluation_splits():
    from perfrl_trl.data.benchmark.pretraining import EVAL_RESERVE, EVAL_SEED, pretraining_problems

    problems, dropped = pretraining_problems(6, families=["sum_formula", "string_concat", "running_median"])
    assert {p["family"] for p in problems} == {"sum_formula", "string_concat"}  # held-out family dropped
    assert len(problems) + dropped == 12
    bench = build_benchmark(
        n_per_family=EVAL_RESERVE // 10, seed=EVAL_SEED, families=["sum_formula", "string_concat"]
    )
    evaluation = {code for split in bench.values() for code in split["input_code"]}
    assert not evaluation & {p["input_code"] for p in problems}
    with pytest.raises(ValueError, match="differ"):
        pretraining_problems(2, seed=EVAL_SEED)
