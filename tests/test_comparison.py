"""Paired evaluation of several models on the same problems, judged in the real sandbox."""

from __future__ import annotations

import math

import pytest
from datasets import Dataset

from perfrl_trl.comparison import (
    TARGET,
    ModelEvaluation,
    ProblemOutcome,
    beats_target_share,
    evaluate_models,
    family_table_markdown,
    paired_tests,
    per_family,
    speedup_endpoint,
)
from perfrl_trl.data.benchmark import build_benchmark
from perfrl_trl.models import create_pretrained
from perfrl_trl.trainer import RRHFConfig


@pytest.fixture(scope="module")
def problems():
    test = build_benchmark(n_per_family=10, families=["sum_formula", "membership_set"], heldout_families=())[
        "test"
    ]
    return test


def test_models_and_target_are_judged_on_the_same_problems(problems, tmp_path):
    a = create_pretrained("t5", "tiny", tmp_path / "a", seed=0)
    b = create_pretrained("t5", "tiny", tmp_path / "b", seed=1)
    config = RRHFConfig(
        str(tmp_path / "out"),
        report_to="none",
        max_completion_length=24,
        max_prompt_length=160,
        eval_num_beams=2,
        eval_num_return_sequences=2,
        use_cpu=True,
    )
    evals = evaluate_models({"a": a, "b": b}, problems, config, n_bootstrap=0)
    assert list(evals) == ["a", "b", TARGET]
    ids = list(problems["problem_id"])
    for e in evals.values():
        assert [o.problem_id for o in e.outcomes] == ids  # dataset order, whatever the judging order
        assert e.summary["n_samples"] == len(ids)
    # Random tiny models write no passing program; the dataset's targets all pass.
    assert not any(evals["a"].passed) and all(evals[TARGET].passed)
    assert all(o.truncated for o in evals["a"].outcomes)  # 24 tokens never reach EOS at random
    # Per returned program: every target compiles; a model's share is at most its share of problems with a
    # compiling program (a problem counts when any of its programs compiles).
    assert evals[TARGET].summary["candidate_compile_rate"] == 1.0
    for name in ("a", "b"):
        assert (
            0
            <= evals[name].summary["candidate_compile_rate"]
            <= evals[name].summary["percent_compiled"] / 100
        )
    assert all(o.beats_target is False for o in evals["a"].outcomes)
    assert {o.family for o in evals["a"].outcomes} == {"sum_formula", "membership_set"}

    tests = paired_tests(evals["a"], evals[TARGET])
    assert tests["pass_only_b"] == len(ids) and tests["pass_only_a"] == 0
    assert tests["pass_p"] == pytest.approx(2 * 0.5 ** len(ids))
    share = beats_target_share(evals["a"], kinds=("optimal", "partial", "marginal"))
    assert share == {"n": len(ids), "beats": 0, "share": 0.0}
    rows = per_family(evals, ["a", TARGET])
    assert [r["family"] for r in rows] == ["membership_set", "sum_formula"]
    assert all(r[f"{TARGET} pass"] == 100 and r["a pass"] == 0 for r in rows)
    assert "| membership_set |" in family_table_markdown(rows)


def test_the_dataset_target_can_beat_itself_only_by_noise(problems, tmp_path):
    """A 'model' whose programs are the targets themselves is never judged faster than the target."""
    config = RRHFConfig(str(tmp_path / "out"), report_to="none", use_cpu=True)
    from perfrl_trl.comparison import _judge

    targets = [[t] for t in problems["target_code"]]
    evals = _judge({"copy": (targets, [[False]] * len(targets))}, problems, config, True, None, 0)
    assert all(evals["copy"].passed)
    assert not any(o.beats_target for o in evals["copy"].outcomes)


def test_bad_input_is_named(tmp_path):
    config = RRHFConfig(str(tmp_path / "out"), report_to="none", use_cpu=True)
    rows = Dataset.from_dict({"prompt": ["x"], "tests": [[{"input": "", "output": ""}]]})
    with pytest.raises(ValueError, match="input_code"):
        evaluate_models({"m": str(tmp_path)}, rows, config)
    with pytest.raises(ValueError, match="empty"):
        evaluate_models(
            {"m": str(tmp_path)},
            rows.add_column("input_code", ["x"]).select([]),
            config,
            compare_to_target=False,
        )


def test_the_trainer_and_evaluate_models_decode_the_same_programs(problems, tmp_path, monkeypatch):
    """One beam search serves both evaluations, `generation_kwargs` included."""
    from perfrl_trl import comparison
    from perfrl_trl.models import load_tokenizer
    from perfrl_trl.trainer import RRHFTrainer
    from perfrl_trl.trainer import trainer as trainer_module

    path = create_pretrained("t5", "tiny", tmp_path / "m", seed=3)
    rows = problems  # two problems
    common = dict(
        report_to="none",
        max_completion_length=12,
        max_prompt_length=160,
        eval_num_beams=2,
        eval_num_return_sequences=2,
        per_device_train_batch_size=2,
        use_cpu=True,
        execution_n_trials=3,
    )
    free, _ = RRHFTrainer(str(path), args=RRHFConfig(str(tmp_path / "free"), **common)).generate_programs(
        rows
    )
    # Forbid the first token the model writes unconstrained: the programs change only if the kwargs are applied.
    banned = load_tokenizer(str(path))(free[0][0], add_special_tokens=False).input_ids[0]
    config = RRHFConfig(str(tmp_path / "out"), generation_kwargs={"bad_words_ids": [[banned]]}, **common)

    judged: dict[str, list] = {}

    def recording(module, name):
        real = module.score_programs

        def score(predictions, *args, **kwargs):
            judged[name] = [list(p) for p in predictions]
            return real(predictions, *args, **kwargs)

        monkeypatch.setattr(module, "score_programs", score)

    recording(trainer_module, "trainer")
    recording(comparison, "comparison")
    RRHFTrainer(str(path), args=config, eval_dataset=rows).evaluate()
    evaluate_models({"m": str(path)}, rows, config, compare_to_target=False, n_bootstrap=0)
    # The trainer's evaluation judges each row's target after the model's programs (for eval_beats_target_rate).
    programs, targets = judged["trainer"][: len(rows)], judged["trainer"][len(rows) :]
    assert targets == [[t] for t in rows["target_code"]]
    assert programs == judged["comparison"]
    assert all(len(p) == 2 for p in programs)
    assert programs != free  # the generation_kwargs were applied


def _evaluation(name, rows):
    """A model's outcomes, neither generated nor judged: (target_kind, passed, speedup, beats_target) each."""
    outcomes = []
    for i, (kind, passed, speedup, beats) in enumerate(rows):
        optimized = bool(passed and speedup and speedup >= 1.1)
        outcomes.append(ProblemOutcome(str(i), "fam", kind, True, passed, optimized, speedup, beats, False))
    return ModelEvaluation(name, {}, outcomes)


def test_paired_tests_compare_beating_the_target_where_both_were_judged():
    a = _evaluation("a", [
        *[("partial", True, 3.0, True)] * 4,  # a beats a partly optimised target, b does not
        ("marginal", True, 2.0, False),  # b beats it, a does not
        *[("optimal", True, 2.0, True)] * 2,  # optimal targets beaten (timing noise): in beats, not partial
        ("partial", True, 3.0, True),  # b's target verdict is missing: in neither test
        *[("partial", False, None, False)] * 3,  # neither beats: concordant
    ])  # fmt: skip
    b = _evaluation("b", [
        *[("partial", True, 1.0, False)] * 4,
        ("marginal", True, 3.0, True),
        *[("optimal", True, 1.0, False)] * 2,
        ("partial", False, None, None),
        *[("partial", False, None, False)] * 3,
    ])  # fmt: skip
    tests = paired_tests(a, b)
    assert (tests["beats_only_a"], tests["beats_only_b"]) == (6, 1)
    assert tests["beats_p"] == pytest.approx(2 * (1 + 7) / 2**7)  # two-sided binomial tail of 1 in 7
    assert (tests["beats_partial_only_a"], tests["beats_partial_only_b"]) == (4, 1)
    assert tests["beats_partial_p"] == pytest.approx(2 * (1 + 5) / 2**5)
    assert (tests["pass_only_a"], tests["pass_only_b"]) == (1, 0)  # the problem b failed
    assert beats_target_share(a) == {
        "n": 9,
        "beats": 5,
        "share": 5 / 9,
    }  # partial and marginal with a verdict
    assert beats_target_share(a, kinds=None) == {"n": 11, "beats": 7, "share": 7 / 11}


def test_speedup_endpoint_counts_a_failure_as_the_slow_program():
    # a: 4x, a failure, and a passing program slower than the input; b: 2x, 1.5x, a failure.
    a = _evaluation(
        "a", [("partial", True, 4.0, None), ("partial", False, None, None), ("partial", True, 0.5, None)]
    )
    b = _evaluation(
        "b", [("partial", True, 2.0, None), ("partial", True, 1.5, None), ("partial", False, None, None)]
    )
    end = speedup_endpoint(a, b)
    assert end["geomean_speedup_a"] == pytest.approx((4 * 1 * 0.5) ** (1 / 3))
    assert end["geomean_speedup_b"] == pytest.approx((2 * 1.5 * 1) ** (1 / 3))
    assert end["mean_log_speedup_a"] == pytest.approx(math.log(2) / 3)
    assert (end["a_faster"], end["a_slower"], end["n"], end["n_differing"]) == (1, 2, 3, 3)
    # |log differences|: log 2 (a faster), log 1.5 and log 2 (a slower): ranks 2.5, 1, 2.5, W+ = 2.5.
    assert end["wilcoxon_statistic"] == 2.5

    # A model faster on every one of 12 problems: the exact test's smallest p, 2 / 2^12.
    faster = _evaluation("f", [("partial", True, 2.0 + i / 10, None) for i in range(12)])
    slower = _evaluation("s", [("partial", i % 2 == 0, 1.2 if i % 2 == 0 else None, None) for i in range(12)])
    end = speedup_endpoint(faster, slower)
    assert end["a_faster"] == 12 and end["wilcoxon_method"] == "exact"
    assert end["wilcoxon_p"] == pytest.approx(2 / 2**12)
    assert end["geomean_speedup_a"] > 2 > 1 < end["geomean_speedup_b"] < 1.2
    assert speedup_endpoint(faster, faster)["wilcoxon_p"] == 1.0
    with pytest.raises(ValueError, match="same problems"):
        speedup_endpoint(faster, _evaluation("short", [("partial", True, 2.0, None)]))
