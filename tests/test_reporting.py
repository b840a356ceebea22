"""Reporting: the Wilcoxon signed-rank test against brute force, the table's optional column, the RL plot, and
the commit and command a result names."""

from __future__ import annotations

import itertools
import json
import math
import random
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib
import pytest

from perfrl_trl import reporting
from perfrl_trl.reporting import markdown_table, plot_rl_curves, wilcoxon_signed_rank


def _brute_force_p(diffs: list[float]) -> float:
    """Two-sided p of W+ over all 2^n sign patterns of the average ranks of |diffs| (zeros dropped)."""
    diffs = [d for d in diffs if d != 0]
    ordered = sorted(abs(d) for d in diffs)
    rank = {v: sum(i + 1 for i, u in enumerate(ordered) if u == v) / ordered.count(v) for v in ordered}
    ranks = [rank[abs(d)] for d in diffs]
    observed = sum(r for r, d in zip(ranks, diffs) if d > 0)
    low = high = 0
    for signs in itertools.product((False, True), repeat=len(ranks)):
        w = sum(r for r, positive in zip(ranks, signs) if positive)
        low += w <= observed + 1e-9
        high += w >= observed - 1e-9
    return min(1.0, 2 * min(low, high) / 2 ** len(ranks))


@pytest.mark.parametrize("n", [1, 2, 5, 9, 13])
def test_wilcoxon_exact_p_is_the_brute_force_null_distribution(n):
    rng = random.Random(n)
    for _ in range(5):
        x = [rng.gauss(0.3, 1) for _ in range(n)]
        y = [rng.gauss(0, 1) for _ in range(n)]
        result = wilcoxon_signed_rank(x, y)
        assert result["method"] == "exact" and result["n_nonzero"] == n
        assert result["statistic"] + result["w_minus"] == n * (n + 1) / 2
        assert result["p"] == pytest.approx(_brute_force_p([a - b for a, b in zip(x, y)]))


def test_wilcoxon_matches_a_published_value():
    # Darwin's paired plant heights, the example of scipy.stats.wilcoxon's documentation: p = 0.041259765625.
    d = [6, 8, 14, 16, 23, 24, 28, 29, 41, -48, 49, 56, 60, -67, 75]
    result = wilcoxon_signed_rank(d, [0] * len(d))
    assert (result["statistic"], result["w_minus"]) == (96.0, 24.0)
    assert result["p"] == 0.041259765625


def test_wilcoxon_with_ties_and_zeros_uses_the_corrected_normal_approximation():
    rng = random.Random(1)
    diffs = [rng.choice([1, 2, 2, 3, 3, 3, 4, -1, -2, -3, 5]) for _ in range(14)]
    result = wilcoxon_signed_rank([*diffs, 0.0, 0.0], [0.0] * 16)  # two zero differences: dropped
    assert (result["n"], result["n_nonzero"], result["method"]) == (16, 14, "normal")
    assert result["p"] == pytest.approx(_brute_force_p(diffs), abs=0.01)
    # The formula by hand: ranks of |d| with ties averaged; tie groups of sizes 5, 4, 3, 1, 1.
    ordered = sorted(abs(d) for d in diffs)
    sizes = [ordered.count(v) for v in sorted(set(ordered))]
    mean, var = 14 * 15 / 4, 14 * 15 * 29 / 24 - sum(t**3 - t for t in sizes) / 48
    z = (abs(result["statistic"] - mean) - 0.5) / var**0.5
    assert result["p"] == pytest.approx(2 * (1 - 0.5 * (1 + math.erf(z / 2**0.5))))


def test_wilcoxon_of_identical_samples_has_no_evidence():
    x = [0.1, 0.5, 2.0]
    assert wilcoxon_signed_rank(x, list(x)) == {
        "n": 3, "n_nonzero": 0, "statistic": 0.0, "w_minus": 0.0, "p": 1.0, "method": "none"
    }  # fmt: skip
    with pytest.raises(ValueError, match="equal lengths"):
        wilcoxon_signed_rank(x, x[:2])


def test_the_faster_than_target_column_appears_only_when_a_row_has_it():
    plain = {"m": {"n_samples": 4, "percent_passed": 50.0}}
    assert "faster than target" not in markdown_table(plain)
    rows = {
        "m": {
            "n_samples": 4,
            "percent_passed": 50.0,
            "beats_target_share": 25.0,
            "beats_target_share_ci": [5, 70],
        },
        "dataset target": {"n_samples": 4, "percent_passed": 100.0},
    }
    header, _, model, target = markdown_table(rows).splitlines()
    column = header.split(" | ").index("faster than target %")
    assert model.split(" | ")[column] == "25.0 [5, 70]" and target.split(" | ")[column] == "n/a"


def test_rl_plot_is_per_update_and_shows_the_faster_than_target_rates(tmp_path):
    history = [
        {"step": 0, "epoch": 0.0, "eval_pass_rate": 0.5, "eval_beats_target_rate": 0.1},
        *({"step": k, "epoch": k / 20, "pass_rate": 0.4, "beats_target_rate": None} for k in range(1, 20)),
        {"step": 20, "epoch": 0.95, "pass_rate": 0.5, "eval_pass_rate": 0.6, "eval_beats_target_rate": 0.2},
    ]
    # SVG with text kept as text, so that labels and legend can be read back.
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        plot_rl_curves(history, str(tmp_path / "curve.svg"))
        per_pass = [{"step": 1, "pass_rate": 0.4, "beats_target_rate": 0.3}]
        plot_rl_curves(per_pass, str(tmp_path / "pass.svg"))
    svg = (tmp_path / "curve.svg").read_text()
    assert "RL update (optimizer step)" in svg and "faster than target (held-out)" in svg
    assert "faster than target (candidates)" not in svg  # every candidate point was None
    # Held-out panel first, with its intervals and size; candidates below, as a moving average over raw points.
    smoothed = [
        {**h, "pass_rate_avg": 0.45, "eval_beats_target_ci": [0.05, 0.3], "eval_n": 320}
        if "eval_n" not in h
        else h
        for h in history
    ]
    smoothed[0] = {"step": 0, "epoch": 0.0, "eval_beats_target_rate": 0.1, "eval_beats_target_ci": [0.05, 0.3],
                   "eval_n": 320}  # fmt: skip
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        plot_rl_curves(smoothed, str(tmp_path / "smoothed.svg"))
    svg = (tmp_path / "smoothed.svg").read_text()
    assert svg.index("320 held-out problems, 95% intervals") < svg.index("the candidates of each update")
    assert "pass (candidates), moving average" in svg
    old = (tmp_path / "pass.svg").read_text()
    assert "RL step (one regeneration pass)" in old and "faster than target (candidates)" in old


_PROVENANCE = (
    "import json, sys; sys.path.insert(0, sys.argv[1]); from perfrl_trl.reporting import provenance; "
    "print(json.dumps(provenance()))"
)


def _git(cwd, *args) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def _provenance_of_copy(site) -> dict:
    """provenance() as a copy of reporting.py at ``site/perfrl_trl/`` reports it, in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, "-c", _PROVENANCE, str(site), "--flag"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.skipif(
    shutil.which("git") is None, reason="git is not installed; provenance reads the commit with it"
)
def test_a_result_names_its_own_checkouts_commit_and_says_when_it_was_edited(tmp_path):
    # The package's own checkout: its commit, clean until a tracked file changes.
    own = tmp_path / "own"
    (own / "perfrl_trl").mkdir(parents=True)
    shutil.copy(reporting.__file__, own / "perfrl_trl" / "reporting.py")
    (own / "perfrl_trl" / "__init__.py").write_text("")
    _git(own, "init", "-q")
    _git(own, "add", ".")
    _git(own, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    clean = _provenance_of_copy(own)
    assert clean["commit"] == _git(own, "rev-parse", "--short", "HEAD") and clean["dirty"] is False
    assert clean["command"].endswith("--flag")
    (own / "perfrl_trl" / "__init__.py").write_text("# edited\n")
    assert _provenance_of_copy(own) == {**clean, "dirty": True}

    # A copy installed inside someone else's repository (a virtualenv in a project) names no commit.
    foreign = tmp_path / "project"
    site = foreign / ".venv" / "lib" / "site-packages"
    shutil.copytree(own / "perfrl_trl", site / "perfrl_trl")
    (foreign / "README").write_text("someone else's project\n")
    _git(foreign, "init", "-q")
    _git(foreign, "add", ".")
    _git(foreign, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    assert _provenance_of_copy(site)["commit"] is None
    # Outside any repository, none either.
    outside = tmp_path / "outside"
    shutil.copytree(own / "perfrl_trl", outside / "perfrl_trl")
    assert {k: v for k, v in _provenance_of_copy(outside).items() if k != "command"} == {
        "commit": None,
        "dirty": None,
    }


def test_written_results_name_the_command_and_commit_in_the_json_and_the_table(tmp_path):
    json_path, md_path = reporting.write_results(str(tmp_path / "results"), {"m": {"percent_passed": 50.0}})
    made_by = json.loads(Path(json_path).read_text())["provenance"]
    assert made_by == reporting.provenance()
    table = Path(md_path).read_text()
    assert f"Made by `{made_by['command']}`" in table
    assert (made_by["commit"] or "not from a git checkout") in table
