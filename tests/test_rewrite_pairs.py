"""Tests of the slow-program generator (perfrl_trl.data.shapes) and of build_rewrite_pairs, in the real sandbox."""

from __future__ import annotations

import ast
import re

import pytest

from perfrl_trl.data.columns import CORE_COLUMNS, make_prompt
from perfrl_trl.data.rewrite_pairs import build_rewrite_pairs, candidate_rewrites
from perfrl_trl.data.rewrites import REWRITES
from perfrl_trl.data.shapes import (
    SHAPES,
    SlowProgram,
    generate_programs,
    sandbox_outputs,
    with_expected_outputs,
)
from perfrl_trl.execution import ExecutionConfig, Executor, Tier

# Shapes whose composed rewrite is 2-4x faster in the measurements behind docs/api.md, so that even small tests
# give R4 pairs; the assertion on that is the only timing-dependent one here.
FAST_SHAPES = ["string_build", "digits", "freq_queries", "map_lines"]


@pytest.fixture(scope="module")
def executor():
    with Executor(ExecutionConfig(timeout_s=10.0)) as ex:
        yield ex


# -- shapes -------------------------------------------------------------------------------------------------
def test_programs_are_deterministic_valid_and_varied():
    progs = generate_programs(48, seed=3, scale=0.05)
    assert generate_programs(48, seed=3, scale=0.05) == progs
    assert [p.code for p in generate_programs(48, seed=4, scale=0.05)] != [p.code for p in progs]
    assert {p.shape for p in progs} == set(SHAPES)
    assert len({p.code for p in progs}) == len(progs)
    assert [p.problem_id for p in progs] == [f"rewrite/3/{i}" for i in range(48)]
    names: set[str] = set()
    for p in progs:
        tree = ast.parse(p.code)
        names |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        assert 2 <= len(p.inputs) <= 3
        assert len(p.inputs[-1]) >= len(p.inputs[0])
        assert any(REWRITES[name](p.code) is not None for name in REWRITES), p.code
    assert len(names) > 60  # names come from pools, not one fixed spelling
    # Surface styles: loops of both kinds, helpers, code already in main(), both indentation units.
    codes = "\n".join(p.code for p in progs)
    for pattern in (r"\bwhile ", r"^def (?!main)", r"^def main\(\):", r"^  \S", r"sys\.stdin\.readline"):
        assert re.search(pattern, codes, re.M), pattern


def test_scale_and_shape_selection():
    small = generate_programs(4, seed=0, scale=0.1, shapes=["row_accumulate"])
    big = generate_programs(4, seed=0, scale=1.0, shapes=["row_accumulate"])
    assert {p.shape for p in small} == {"row_accumulate"}
    assert sum(len(i) for p in small for i in p.inputs) * 5 < sum(len(i) for p in big for i in p.inputs)
    with pytest.raises(KeyError, match="unknown shapes"):
        generate_programs(1, shapes=["nope"])
    with pytest.raises(ValueError, match="scale"):
        generate_programs(1, scale=0)


def test_expected_outputs_come_from_the_sandbox(executor):
    progs = generate_programs(3, seed=0, scale=0.05)
    broken = SlowProgram("rewrite/x/0", "made", "print(1 // int(input()))\n", ["1\n", "0\n"])
    endless = SlowProgram("rewrite/x/1", "made", "while True:\n    pass\n", ["\n"])
    with Executor(ExecutionConfig(timeout_s=0.5, workers=1)) as short:
        rows, dropped = with_expected_outputs([*progs, broken, endless], short)
    assert dropped == {"runtime_error": 1, "timeout": 1}
    assert [r["problem_id"] for r in rows] == [p.problem_id for p in progs]
    for row, prog in zip(rows, progs):
        assert row["input_code"] == prog.code and [t["input"] for t in row["tests"]] == prog.inputs
        assert all(t["output"].strip() for t in row["tests"])
        # The slow program passes the tests made from it; the tests fail a program that prints otherwise.
        assert executor.judge(prog.code, row["tests"], time_it=False).tier == Tier.R3
        assert executor.judge("print(0)", row["tests"], time_it=False).tier == Tier.R2
    assert sandbox_outputs(executor, "print(input()[::-1])", ["abc\n"]) == (["cba\n"], "passed")
    assert sandbox_outputs(executor, "def (:", ["\n"]) == (None, "compile_error")


def test_every_rewrite_of_generated_programs_prints_what_the_slow_program_prints(executor):
    progs = generate_programs(12, seed=5, scale=0.05)
    rows, dropped = with_expected_outputs(progs, executor)
    assert not dropped
    jobs, labels = [], []
    for row in rows:
        for label, code in candidate_rewrites(row["input_code"]).items():
            if code is not None:
                jobs.append((code, row["tests"], None))
                labels.append((row["shape"], label))
    assert len(jobs) > 30
    verdicts = executor.judge_many(jobs, time_it=False)
    failed = [(lab, v.status) for lab, v in zip(labels, verdicts) if not v.passed]
    assert not failed


def test_candidate_rewrites_labels():
    code = "n = int(input())\nfor i in range(n):\n    print(i * i)\n"
    out = candidate_rewrites(code)
    assert list(out) == [*REWRITES, "print_once+append_to_comprehension+fast_input+into_function"]
    assert out["concat_to_join"] is None
    assert "print_once" not in candidate_rewrites(code, compositions=False)["into_function"]
    assert list(candidate_rewrites(code, ["fast_input"])) == ["fast_input"]
    with pytest.raises(KeyError):
        candidate_rewrites(code, ["nope"])


# -- build_rewrite_pairs --------------------------------------------------------------------------------------
def test_build_rewrite_pairs_keeps_only_r4_and_counts_add_up(executor):
    ds, report = build_rewrite_pairs(
        4, seed=0, executor=executor, scale=0.3, progress=False, shapes=FAST_SHAPES
    )
    assert set(CORE_COLUMNS) <= set(ds.column_names)
    assert {"family", "shape", "target_kind", "speedup"} <= set(ds.column_names)
    assert report["programs"] == 4 and report["programs_with_tests"] == 4
    n = report["programs_with_tests"]
    per = report["per_rewrite"]
    for label, counts in per.items():
        assert counts["judged"] == counts["failed_tests"] + counts["not_faster"] + counts["kept"], label
        if "+" not in label:
            assert counts["not_applicable"] + counts["judged"] + counts["duplicate"] == n, label
    assert report["candidates"] == sum(c["judged"] for c in per.values())
    assert report["pairs"] == len(ds) == sum(c["kept"] for c in per.values())
    assert sum(report["per_shape"][s].get("pairs", 0) for s in report["per_shape"]) == len(ds)
    for reason in ("not_applicable", "failed_tests", "not_faster", "duplicate"):
        assert report["dropped"][reason] == sum(c[reason] for c in per.values())
    # Every kept pair: the real slow program, a rewrite of it, and the executor's R4 against it (re-judged
    # here from the cache, so the rows carry what was measured).
    assert len(ds) >= 1, report
    for row in ds:
        label = row["family"].removeprefix("rewrite:")
        assert row["prompt"] == make_prompt(row["input_code"])
        assert candidate_rewrites(row["input_code"])[label] == row["target_code"]
        verdict = executor.judge(row["target_code"], row["tests"], row["input_code"])
        assert verdict.tier == Tier.R4 and verdict.speedup == pytest.approx(row["speedup"])
        assert row["speedup"] >= executor.config.margin
        assert row["target_kind"] in ("optimal", "partial")
    print("tiny build:", report["pairs"], {k: v["kept"] for k, v in per.items()})

    # One target per prompt: the same programs and cached verdicts, so no new timing.
    best, best_report = build_rewrite_pairs(
        4, seed=0, executor=executor, scale=0.3, progress=False, shapes=FAST_SHAPES, best_only=True
    )
    assert len(set(best["problem_id"])) == len(best) == len(set(ds["problem_id"]))
    assert best_report["dropped"]["not_best"] == len(ds) - len(best)
    assert set(best["target_kind"]) == {"optimal"}
    for pid, speedup in zip(best["problem_id"], best["speedup"]):
        assert speedup == max(s for p, s in zip(ds["problem_id"], ds["speedup"]) if p == pid)


def test_build_rewrite_pairs_rejects_bad_arguments():
    with pytest.raises(ValueError, match="n_programs"):
        build_rewrite_pairs(0, progress=False)
    with pytest.raises(KeyError, match="unknown rewrites"):
        build_rewrite_pairs(1, rewrites=["nope"], progress=False)


def test_lazy_exports_do_not_load_the_data_stack():
    import subprocess
    import sys

    code = (
        "import sys, perfrl_trl.data as d\n"
        "for name in ('REWRITES', 'apply_rewrites', 'build_rewrite_pairs', 'generate_programs', 'SHAPES'):\n"
        "    getattr(d, name)\n"
        "print(sorted(m for m in ('datasets', 'torch', 'transformers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
