"""Reward throughput without losing fidelity: the sequential timing rule, shared verdicts, the logged hit rate.

Everything that runs a program uses the real sandboxed executor at tiny sizes. Speed itself is measured in
benchmarks/reward_throughput.py, not here.
"""

from __future__ import annotations

import math
import random
from dataclasses import replace

import pytest
from datasets import Dataset

from perfrl_trl.execution import ExecutionConfig, Executor, get_executor
from perfrl_trl.execution.timing import (
    NOT_FASTER,
    OPEN,
    PROMISING,
    clearly_slower,
    confirm_paired,
    decisive_win,
    min_p_value,
    paired_looks,
    screen,
)
from perfrl_trl.metrics import score_programs
from perfrl_trl.rewards import UnitTestRewardFunction

# About 20-40 ms of CPU over the two tests; the fast one is a closed form (a few hundred times faster).
SLOW = "n = int(input())\ns = 0\nfor i in range(n):\n    s += i\nprint(s)\n"
FAST = "n = int(input())\nprint(n * (n - 1) // 2)\n"
SLOWER = "n = int(input())\ns = 0\nfor i in range(4 * n):\n    s += i if i < n else 0\nprint(s)\n"
MUCH_SLOWER = SLOWER.replace("4 * n", "16 * n")
TESTS = [{"input": f"{n}\n", "output": f"{n * (n - 1) // 2}\n"} for n in (150_000, 250_000)]
TINY_TESTS = [{"input": "3\n", "output": "6\n"}]
# Well over the 50 ms a decisive win needs of its baseline (about 0.3 s of CPU here): the loop of SLOW
# against its closed form, a few thousand times apart.
HEAVY_TESTS = [{"input": f"{n}\n", "output": f"{n * (n - 1) // 2}\n"} for n in (1_500_000, 2_500_000)]
CONFIG = ExecutionConfig(timeout_s=5.0, n_trials=5, workers=2)


# -- the rule, as pure functions -----------------------------------------------------------------------


def test_paired_looks_spend_at_most_alpha_and_every_look_can_grant():
    for n in range(3, 12):
        for alpha in (0.01, 0.03, 0.05, 0.1):
            if min_p_value(n, n) > alpha:
                continue
            looks = paired_looks(n, alpha)
            assert sum(look.alpha for look in looks) <= alpha + 1e-12, (n, alpha, looks)
            assert all(min_p_value(look.n_candidate, look.n_baseline) <= look.alpha for look in looks)
            assert looks[-1].n_candidate == looks[-1].n_baseline in (n, n + 1)
    assert [(lk.n_candidate, lk.n_baseline) for lk in paired_looks(5, 0.05)] == [(4, 3), (6, 6)]
    assert len(paired_looks(5, 0.05, sequential=False)) == 1


def test_sequential_confirmation_keeps_false_faster_below_alpha_and_finds_real_speedups():
    rng = random.Random(0)
    n = 10_000

    def same():
        return rng.lognormvariate(0.0, 0.2)

    # H0: both programs' runs come from one distribution. With margin 1.0 and no minimum difference only
    # the significance test stands between noise and "faster": the rate must stay within alpha.
    hits = sum(
        confirm_paired(same, same, n_trials=5, margin=1.0, alpha=0.05, min_time_diff_s=0.0)[2].faster
        for _ in range(n)
    )
    assert hits / n <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / n), hits / n
    # A real 1.25x speed-up under 5% noise is granted, mostly at the first look (4 + 3 runs, not 6 + 6).
    # Testing the margin itself (the candidate's times scaled by 1.1) leaves a 1.14x contrast to detect,
    # so a few more candidates go on to the final look than when the raw times were ranked (8.1 runs).
    found, runs = 0, 0
    for _ in range(500):
        cand, base, decision = confirm_paired(
            lambda: rng.lognormvariate(math.log(0.8), 0.05), lambda: rng.lognormvariate(0.0, 0.05)
        )
        found += decision.faster
        runs += len(cand) + len(base)
    assert found / 500 >= 0.9 and runs / 500 < 8.5, (found, runs)


def test_the_rank_test_is_of_the_margin_itself():
    """A candidate exactly ``margin`` times faster is H0: it must pass at most ``alpha`` of the time.

    A rank test of the raw times (the rule before) passes such a candidate whenever its medians clear the
    margin by noise, about half the time; scaling the candidate's times by the margin bounds it by alpha.
    """
    rng = random.Random(1)
    n = 4_000

    def at_margin():
        return rng.lognormvariate(math.log(1 / 1.1), 0.05)

    def baseline():
        return rng.lognormvariate(0.0, 0.05)

    for sequential in (True, False):
        hits = sum(
            confirm_paired(at_margin, baseline, n_trials=5, margin=1.1, alpha=0.05, sequential=sequential)[
                2
            ].faster
            for _ in range(n)
        )
        assert hits / n <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / n), (sequential, hits / n)
    # Where the truth is well past the margin (1.3x), the rule still finds it.
    found = sum(
        confirm_paired(lambda: rng.lognormvariate(math.log(1 / 1.3), 0.05), baseline, n_trials=5, margin=1.1)[
            2
        ].faster
        for _ in range(500)
    )
    assert found / 500 >= 0.8, found


def test_screen_separates_clear_cases_and_leaves_the_rest_open():
    base = [0.020, 0.021, 0.020]
    assert screen([0.020, 0.021], base) == NOT_FASTER  # itself
    assert screen([0.045, 0.050], base) == NOT_FASTER  # much slower
    assert screen([0.005, 0.006], base) == PROMISING  # much faster
    assert screen([0.005, 0.030], base) == OPEN  # one trial says faster, the other does not
    assert screen([0.00005, 0.00006], [0.0002] * 3) == NOT_FASTER  # under the minimum difference


def test_decisive_win_needs_a_large_win_on_every_trial_and_a_baseline_long_enough_to_trust():
    base = [0.300, 0.310, 0.330]
    assert decisive_win([0.010, 0.012], base, factor=5.0)
    assert decisive_win([0.055, 0.058], base, factor=5.0)  # just over 5x the fastest baseline trial
    assert not decisive_win([0.010, 0.061], base, factor=5.0)  # its slowest trial is under 5x
    assert not decisive_win(
        [0.030, 0.031], [0.100, 0.300, 0.310], factor=5.0
    )  # 10x the median, 3x the fastest
    assert not decisive_win([0.010], base, factor=5.0)  # one trial is never enough
    assert not decisive_win([0.010, 0.012], base[:2], factor=5.0)
    assert not decisive_win([0.001, 0.001], [0.040, 0.040, 0.040], factor=5.0)  # baseline under 50 ms
    assert not decisive_win([0.010, 0.012], base, factor=None)


def test_clearly_slower_needs_every_value_at_twice_the_slowest_baseline_trial():
    base = [0.300, 0.310, 0.330]
    assert clearly_slower([0.700], base)
    assert not clearly_slower([0.600], base)  # under twice the slowest baseline trial
    assert not clearly_slower([0.700, 0.500], base)  # one value within reach
    assert not clearly_slower([], base) and not clearly_slower([0.7], [])


def test_sequential_timing_is_validated_by_name():
    with pytest.raises(ValueError, match=r"ExecutionConfig\.sequential_timing"):
        ExecutionConfig(sequential_timing="yes")


@pytest.mark.parametrize("value", [1.5, 2.0, "5", True])
def test_decisive_speedup_must_lie_well_beyond_the_margin(value):
    with pytest.raises(ValueError, match=r"ExecutionConfig\.decisive_speedup"):
        ExecutionConfig(decisive_speedup=value)
    assert ExecutionConfig(decisive_speedup=None).decisive_speedup is None
    assert ExecutionConfig(margin=1.5, decisive_speedup=3.0).decisive_speedup == 3.0


# -- the rule on the real executor -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def executors():
    # Without decisive wins, so that a clear win goes through the paired runs whatever the machine's speed.
    seq = Executor(replace(CONFIG, decisive_speedup=None))
    fixed = Executor(replace(CONFIG, sequential_timing=False))
    yield seq, fixed
    seq.close()
    fixed.close()


def test_early_stopping_decides_like_the_fixed_rule_on_clear_cases(executors):
    seq, fixed = executors
    cases = {"itself": (SLOW + "# a copy\n", 3), "much faster": (FAST, 4), "much slower": (SLOWER, 3)}
    verdicts = {}
    for name, (program, tier) in cases.items():
        s, f = seq.judge(program, TESTS, baseline=SLOW), fixed.judge(program, TESTS, baseline=SLOW)
        assert s.tier == f.tier == tier, (name, s, f)
        verdicts[name] = s
    # The slower one stopped after its correctness run and at most one timed run (after the correctness run
    # alone when that took twice the baseline's slowest trial); the clear win was confirmed at the first
    # paired look.
    assert len(verdicts["much slower"].trials) <= 2
    assert (len(verdicts["much faster"].trials), len(verdicts["much faster"].baseline_trials)) == (4, 3)
    assert seq.stats["timed_runs"] < fixed.stats["timed_runs"], (seq.stats, fixed.stats)


def test_a_decisive_win_skips_the_paired_runs_unless_disabled():
    with (
        Executor(replace(CONFIG, workers=1)) as ex,
        Executor(replace(CONFIG, workers=1, decisive_speedup=None)) as off,
    ):
        verdict = ex.judge(FAST, HEAVY_TESTS, baseline=SLOW)
        assert verdict.tier == 4 and verdict.p_value is None and verdict.speedup > 5, verdict
        # Its correctness run and one timed run against the baseline's three values; the timed runs are
        # the baseline's two and the candidate's one, no paired run of the slow baseline.
        assert (len(verdict.trials), len(verdict.baseline_trials)) == (2, 3)
        assert ex.stats["timed_runs"] == 3, ex.stats
        # Disabled, the same win is confirmed on paired runs (first look: 4 candidate, 3 baseline runs).
        paired = off.judge(FAST, HEAVY_TESTS, baseline=SLOW)
        assert paired.tier == 4 and paired.p_value is not None
        assert (len(paired.trials), len(paired.baseline_trials)) == (4, 3)
        assert off.stats["timed_runs"] == 3 + 7, off.stats


def test_a_far_slower_candidate_stops_after_its_correctness_run():
    with Executor(replace(CONFIG, workers=1)) as ex:
        verdict = ex.judge(MUCH_SLOWER, TESTS, baseline=SLOW)  # 16 times the loop
        assert verdict.tier == 3 and not verdict.faster and verdict.speedup < 0.5, verdict
        assert len(verdict.trials) == 1 and len(verdict.baseline_trials) == 3
        assert ex.stats["timed_runs"] == 2, ex.stats  # the baseline's two, none of the candidate's


def test_a_candidate_identical_to_its_baseline_reuses_the_baseline():
    with Executor(replace(CONFIG, workers=1)) as ex:
        verdict = ex.judge(SLOW, TESTS, baseline=SLOW)
        assert verdict.tier == 3 and verdict.speedup == 1.0
        assert verdict.trials == verdict.baseline_trials and len(verdict.trials) == 3
        # The baseline's two timed runs, nothing for the candidate; its correctness run was the baseline's.
        assert ex.stats["timed_runs"] == 2 and ex.stats["check_hits"] == 1


# -- never judge the same thing twice ----------------------------------------------------------------------


def test_identical_requests_share_one_verdict_even_in_flight():
    with Executor(CONFIG) as ex:
        program = FAST + "# greedy and sampled alike\n"
        verdicts = ex.judge_many([(program, TESTS, SLOW)] * 4)
        assert all(v is verdicts[0] for v in verdicts) and verdicts[0].tier == 4
        assert ex.stats["runs"] == 1 and ex.stats["cache_hits"] == 3 and ex.stats["requests"] == 4
        # A later step asking again is served too.
        assert ex.judge(program, TESTS, baseline=SLOW) is verdicts[0]
        assert ex.stats["runs"] == 1 and ex.stats["cache_hits"] == 4


def test_same_program_and_tests_share_the_correctness_run():
    with Executor(replace(CONFIG, workers=1)) as ex:
        ex.judge(FAST, TESTS, baseline=SLOW)
        ex.judge(FAST, TESTS, baseline=SLOW + "# another slow program of the same problem\n")
        assert ex.stats["runs"] == 2 and ex.stats["check_hits"] == 1


def test_verdict_and_correctness_caches_are_bounded():
    with Executor(replace(CONFIG, workers=1, cache_size=2)) as ex:
        programs = [f"print(sum(range(int(input()) + 1)))  # {i}\n" for i in range(3)]
        for program in programs:
            assert ex.judge(program, TINY_TESTS, time_it=False).tier == 3
            assert len(ex._verdicts) <= 2 and len(ex._checks) <= 2
        ex.judge(programs[2], TINY_TESTS, time_it=False)
        assert ex.stats["runs"] == 3 and ex.stats["cache_hits"] == 1
        ex.judge(programs[0], TINY_TESTS, time_it=False)  # evicted: judged again
        assert ex.stats["runs"] == 4 and ex.stats["check_hits"] == 0


def test_baselines_are_timed_once_across_steps_evaluation_and_the_metric():
    config = replace(CONFIG, timeout_s=4.5)  # settings of its own: a process-wide executor no test shares
    reward = UnitTestRewardFunction(execution_config=config)
    ex = reward.executor
    assert ex is get_executor(config)
    for step in range(2):  # two RL steps with new candidates for the same problem
        futures = reward.submit([FAST + f"# step {step}\n", SLOWER], [TESTS, TESTS], [SLOW, SLOW])
        assert [f.result().tier for f in futures] == [4, 3]
    score_programs([[FAST + "# eval\n"]], [SLOW], [TESTS], margin=config.margin, executor=ex)  # evaluation
    score_programs([[FAST + "# metric\n"]], [SLOW], [TESTS], margin=config.margin, execution_config=config)
    assert ex.stats["baselines_timed"] == 1, ex.stats


# -- the trainer logs it -------------------------------------------------------------------------------------


def test_trainer_logs_the_cache_hit_rate_and_baselines_per_step(tmp_path):
    from perfrl_trl.models import create_pretrained
    from perfrl_trl.trainer import RRHFConfig, RRHFTrainer

    model = create_pretrained("t5", "tiny", tmp_path / "t5", dropout_rate=0.0)
    rows = [
        {
            "prompt": "Write faster version:\n" + SLOW + f"# case {k}\n",
            "input_code": SLOW,
            "target_code": FAST,
            "tests": [{"input": f"{n}\n", "output": f"{n * (n - 1) // 2}\n"}],
        }
        for k, n in enumerate((10, 20))
    ]
    args = RRHFConfig(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=2,
        max_completion_length=8,
        max_prompt_length=64,
        num_random_samples=1,
        logging_steps=1,
        max_steps=2,
        report_to=[],
        save_strategy="no",
        disable_tqdm=True,
        execution_n_trials=3,
        execution_timeout_s=2.0,
        # Settings of its own, so that this test's executor starts with no cached verdict.
        execution_kwargs={"memory_mb": 1000},
    )
    trainer = RRHFTrainer(model, args=args, train_dataset=Dataset.from_list(rows))
    trainer.train()
    steps = [log for log in trainer.state.log_history if "reward/cache_hit_rate" in log]
    assert len(steps) == 2, trainer.state.log_history
    # The two targets are judged in step 1; step 2 asks for them again and is served from the cache
    # (2 of its 6 requests at least), and times no baseline (one per problem for the whole run).
    assert steps[0]["reward/baselines_timed"] == 2
    assert steps[1]["reward/baselines_timed"] == 0
    assert steps[1]["reward/cache_hit_rate"] >= 2 / 6 - 1e-9, steps
