"""Results of a PerfRL run as people read them: the paper's Table I (with intervals) and Fig. 2 (a PNG)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator, Sequence
from typing import Any

COLUMNS = (
    ("%OPT", "percent_optimized"),
    ("SP (PIE)", "speedup"),
    ("RTR % (all)", "runtime_reduction"),
    ("compile", "percent_compiled"),
    ("pass", "percent_passed"),
)
# Shown only when some row has the key: most runs do not judge the dataset's targets.
OPTIONAL_COLUMNS = (("faster than target %", "beats_target_share"),)
# Up to this many non-zero differences without ties, the signed-rank p-value is exact (2^25 sign patterns
# are summarised by a table of at most 326 sums, so this is cheap); beyond it the normal approximation is
# close.
_WILCOXON_EXACT_MAX = 25


def mcnemar_exact(a: Sequence[bool], b: Sequence[bool]) -> float:
    """Two-sided exact McNemar p-value for paired outcomes (the same problems under two models).

    Example:
        ```python
        >>> mcnemar_exact([True] * 10, [True] * 10)  # no discordant pair: no evidence of a difference
        1.0
        >>> round(mcnemar_exact([True] * 10 + [False] * 2, [False] * 10 + [False] * 2), 4)
        0.002
        ```
    """
    if len(a) != len(b):
        raise ValueError(f"paired outcomes need equal lengths, got {len(a)} and {len(b)}")
    only_a = sum(1 for x, y in zip(a, b) if x and not y)
    only_b = sum(1 for x, y in zip(a, b) if y and not x)
    n = only_a + only_b
    if n == 0:
        return 1.0
    k = min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def wilcoxon_signed_rank(x: Sequence[float], y: Sequence[float]) -> dict[str, Any]:
    """Two-sided Wilcoxon signed-rank test of paired samples `x` and `y` (the same problems under two models).

    Zero differences are dropped (Wilcoxon's method) and tied absolute differences share their average rank.
    With at most 25 non-zero differences and no ties the p-value is exact, from the null distribution of the
    statistic (every sign pattern equally likely); otherwise it is the normal approximation with the tie
    correction of the variance and a continuity correction of 0.5.

    Args:
        x (`Sequence[float]`): One value per pair, e.g. model A's log speed-up on each problem.
        y (`Sequence[float]`): The other member of each pair, in the same order.

    Returns:
        `dict` with ``n`` (pairs), ``n_nonzero`` (pairs with a difference), ``statistic`` (W+, the rank sum of
        the pairs where `x` is larger), ``w_minus`` (the rank sum where `y` is larger), ``p`` (two-sided) and
        ``method`` (``"exact"``, ``"normal"``, or ``"none"`` when every difference is zero and ``p`` is 1).

    Example:
        ```python
        >>> r = wilcoxon_signed_rank([2.0, 3.0, 4.0, 5.0, 6.0, 7.0], [1.0] * 6)  # x larger in all 6 pairs
        >>> r["statistic"], r["p"], r["method"]  # 2 of the 2^6 equally likely sign patterns are this extreme
        (21.0, 0.03125, 'exact')
        ```
    """
    if len(x) != len(y):
        raise ValueError(f"paired samples need equal lengths, got {len(x)} and {len(y)}")
    diffs = [a - b for a, b in zip(x, y) if a != b]
    n = len(diffs)
    out: dict[str, Any] = {
        "n": len(x),
        "n_nonzero": n,
        "statistic": 0.0,
        "w_minus": 0.0,
        "p": 1.0,
        "method": "none",
    }
    if n == 0:
        return out
    order = sorted(range(n), key=lambda i: abs(diffs[i]))
    ranks = [0.0] * n
    tie_sizes = []
    start = 0
    while start < n:
        end = start
        while end + 1 < n and abs(diffs[order[end + 1]]) == abs(diffs[order[start]]):
            end += 1
        for k in range(start, end + 1):
            ranks[order[k]] = (start + end) / 2 + 1
        tie_sizes.append(end - start + 1)
        start = end + 1
    w_plus = sum(r for r, d in zip(ranks, diffs) if d > 0)
    out.update(statistic=w_plus, w_minus=n * (n + 1) / 2 - w_plus)
    if n <= _WILCOXON_EXACT_MAX and max(tie_sizes) == 1:
        # counts[s]: sign patterns of ranks 1..n whose positive ranks sum to s.
        counts = [1] + [0] * (n * (n + 1) // 2)
        for rank in range(1, n + 1):
            for s in range(len(counts) - 1, rank - 1, -1):
                counts[s] += counts[s - rank]
        w = round(w_plus)
        tail = min(sum(counts[: w + 1]), sum(counts[w:]))
        out.update(p=min(1.0, 2 * tail / 2**n), method="exact")
        return out
    mean = n * (n + 1) / 4
    var = n * (n + 1) * (2 * n + 1) / 24 - sum(t**3 - t for t in tie_sizes) / 48
    z = max(abs(w_plus - mean) - 0.5, 0.0) / math.sqrt(var)
    out.update(p=min(1.0, math.erfc(z / math.sqrt(2))), method="normal")
    return out


def _cell(summary: dict[str, Any], key: str) -> str:
    value = summary.get(key)
    if value is None:
        return "n/a"
    ci = summary.get(f"{key}_ci")
    text = f"{value:.3g}" if key in ("speedup",) else f"{value:.1f}"
    if ci and ci[0] is not None:
        text += f" [{ci[0]:.3g}, {ci[1]:.3g}]" if key == "speedup" else f" [{ci[0]:.0f}, {ci[1]:.0f}]"
    return text


def markdown_table(rows: dict[str, dict[str, Any]], notes: Sequence[str] = ()) -> str:
    """Table I: one row per model, the metric columns with 95% intervals, time, energy and peak power.

    Args:
        rows: ``{row name: summary}``, where a summary holds ``perfrl_trl.metrics.arithmetic.aggregate``'s
            keys plus ``train_time_s``, ``energy_kj``, ``peak_w`` and ``energy_method``, and optionally
            ``beats_target_share`` (percent of the problems with a passing dataset target where the model's
            program was faster than it, with ``beats_target_share_ci``): its column appears when a row has it.
        notes: Lines printed under the table (significance, estimates).

    Example:
        ```python
        >>> row = {"n_samples": 2, "percent_passed": 50.0, "beats_target_share": 50.0}
        >>> markdown_table({"m": row}).splitlines()[0].split(" | ")[-5:-3]
        ['pass', 'faster than target %']
        ```
    """
    columns = COLUMNS + tuple(
        (name, key) for name, key in OPTIONAL_COLUMNS if any(s.get(key) is not None for s in rows.values())
    )
    header = (
        ["model", "n"] + [name for name, _ in columns] + ["train time (s)", "energy (kJ)", "peak power (W)"]
    )
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, s in rows.items():
        energy = s.get("energy_kj")
        method = s.get("energy_method")
        mark = "*" if method == "estimate" else ""
        cells = [name, str(s.get("n_samples", ""))] + [_cell(s, key) for _, key in columns]
        cells += [
            f"{s['train_time_s']:.0f}" if s.get("train_time_s") is not None else "-",
            f"{energy:.2f}{mark}" if energy is not None else "-",
            f"{s['peak_w']:.0f}{mark}" if s.get("peak_w") is not None else "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    out = "\n".join(lines)
    if notes:
        out += "\n\n" + "\n".join(f"- {n}" for n in notes)
    return out


def provenance() -> dict[str, Any]:
    """What made a result: the command line, and the package's commit when it runs from a git checkout of it.

    ``commit`` is None for an installed wheel, or when git is missing; ``dirty`` says whether tracked files
    differed from that commit, since a commit alone would then name code that did not run.

    Example:
        ```python
        >>> sorted(provenance())
        ['command', 'commit', 'dirty']
        ```
    """
    package = os.path.dirname(os.path.abspath(__file__))
    commit, dirty = None, None
    try:
        git = ["git", "-C", package]
        top = subprocess.run(
            [*git, "rev-parse", "--show-toplevel"], capture_output=True, text=True, timeout=10
        )
        # Only this package's own checkout counts: an installed copy can sit inside someone else's repository
        # (a virtualenv in a project folder), whose commit says nothing about this code.
        if top.returncode == 0 and os.path.samefile(
            os.path.join(top.stdout.strip(), os.path.basename(package)), package
        ):
            head = subprocess.run(
                [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
            )
            status = subprocess.run(
                [*git, "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=10,
            )
            if head.returncode == 0 and status.returncode == 0:
                commit, dirty = head.stdout.strip(), bool(status.stdout.strip())
    except (OSError, subprocess.TimeoutExpired):
        pass
    return {"command": shlex.join(sys.argv), "commit": commit, "dirty": dirty}


def write_results(
    path_prefix: str,
    rows: dict[str, dict[str, Any]],
    notes: Sequence[str] = (),
    extra: dict | None = None,
    made_by: dict[str, Any] | None = None,
) -> tuple[str, str]:
    """Write ``<prefix>.json`` and ``<prefix>.md``, both naming the commit and command that made them; returns
    both paths.

    Args:
        made_by: `provenance()` as read when the run started; a long run should pass it, since the checkout can
            move while it runs. Read now when not given.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path_prefix)), exist_ok=True)
    made_by = provenance() if made_by is None else made_by
    where = "not from a git checkout" if made_by["commit"] is None else f"commit {made_by['commit']}"
    where += ", with local changes" if made_by["dirty"] else ""
    md = markdown_table(rows, [*notes, f"Made by `{made_by['command']}` ({where})."])
    with open(path_prefix + ".md", "w") as fh:
        fh.write(md + "\n")
    with open(path_prefix + ".json", "w") as fh:
        json.dump(
            {"rows": rows, "notes": list(notes), "provenance": made_by, **(extra or {})},
            fh,
            indent=2,
            default=str,
        )
    return path_prefix + ".json", path_prefix + ".md"


@contextlib.contextmanager
def _figure(path: str, panels: int = 1) -> Iterator[Any]:
    """One PNG figure of the size every plot here uses (taller for stacked panels): yields its axes (a list of
    `panels` axes when more than one), then lays out, saves and closes it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(panels, 1, figsize=(6.4, 4.0 + 3.0 * (panels - 1)), dpi=120, squeeze=False)
    try:
        yield axes[0, 0] if panels == 1 else list(axes[:, 0])
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)


def _loss_axes(ax) -> None:
    """Cross-entropy against optimizer steps, on a log scale."""
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (log scale)")
    ax.grid(alpha=0.3, which="both")


def plot_rl_curves(
    history: Sequence[dict[str, float]], path: str, title: str = "PerfRL: RRHF", x_label: str | None = None
) -> str:
    """The paper's Fig. 2: held-out and candidate rates along RL training, as a PNG.

    The held-out panel comes first, as it is the one that says whether RL is working: the rates of the model at
    each point, on problems it never trains on, with their intervals when the points carry them. Below it, the
    rates of the candidates that fed each update: one update's handful of prompts makes them jump, so each is
    drawn as faint raw points under its moving average (``{rate}_avg``) when the history has one.

    Args:
        history: One dict per point with ``step`` and any of ``pass_rate``, ``opt_rate``, ``compile_rate``,
            ``beats_target_rate`` (fractions of the generated candidates; the last of those counted over rows
            with a target), their ``..._avg`` moving averages, and ``eval_compile_rate``/``eval_pass_rate``/
            ``eval_opt_rate``/``eval_beats_target_rate`` (held-out) with optional ``eval_pass_ci`` and
            ``eval_beats_target_ci`` intervals and ``eval_n``. A missing or `None` rate leaves no point.
        path: Where to write the PNG.
        title: The figure's title.
        x_label: The x axis' label. `None`: "RL update" when the points carry ``epoch`` (the per-update
            history of `perfrl_trl.trainer.callbacks.RLCurve`), else "RL step (one regeneration pass)".

    Example:
        ```python
        >>> start = {"step": 0, "epoch": 0.0, "eval_pass_rate": 0.5}
        >>> history = [start, {"step": 1, "epoch": 0.0, "pass_rate": 0.4, "pass_rate_avg": 0.4}]
        >>> plot_rl_curves(history, "/tmp/rl_curves.png")  # doctest: +SKIP
        '/tmp/rl_curves.png'
        ```
    """
    from matplotlib.ticker import MaxNLocator

    heldout = {
        "eval_beats_target_rate": ("faster than target (held-out)", "C3", "-"),
        "eval_pass_rate": ("pass (held-out)", "C0", "-"),
        "eval_opt_rate": ("%OPT (held-out)", "C1", "--"),
        "eval_compile_rate": ("compile (held-out)", "C2", ":"),
    }
    candidates = {
        "beats_target_rate": ("faster than target (candidates)", "C3"),
        "pass_rate": ("pass (candidates)", "C0"),
        "opt_rate": ("optimised (candidates)", "C1"),
        "compile_rate": ("compile (candidates)", "C2"),
    }

    def series(key: str) -> list[tuple[float, float]]:
        return [(h["step"], 100 * h[key]) for h in history if h.get(key) is not None]

    if x_label is None:
        per_update = any("epoch" in h for h in history)
        x_label = "RL update (optimizer step)" if per_update else "RL step (one regeneration pass)"
    has_heldout = any(series(key) for key in heldout)
    has_candidates = any(series(key) for key in candidates)
    panels = [name for name, present in (("heldout", has_heldout), ("candidates", has_candidates)) if present]
    steps = sorted({h["step"] for h in history})
    dense = len(steps) > 12
    with _figure(path, max(1, len(panels))) as axes:
        axes = axes if isinstance(axes, list) else [axes]
        for ax, panel in zip(axes, panels or ["candidates"]):
            if panel == "heldout":
                n = max((h.get("eval_n") or 0 for h in history), default=0)
                for key, (label, color, style) in heldout.items():
                    points = series(key)
                    if not points:
                        continue
                    ci_key = key.replace("_rate", "_ci")
                    cis = [h.get(ci_key) for h in history if h.get(key) is not None]
                    if all(ci is not None for ci in cis):
                        xs, ys = zip(*points)
                        err = [
                            [y - 100 * lo for y, (lo, _) in zip(ys, cis)],
                            [100 * hi - y for y, (_, hi) in zip(ys, cis)],
                        ]
                        ax.errorbar(
                            xs, ys, yerr=err, fmt=style, color=color, marker="o", capsize=3, label=label
                        )
                    else:
                        ax.plot(*zip(*points), style, color=color, marker="o", label=label)
                where = f"{n} held-out problems, 95% intervals" if n else "held-out problems"
                ax.set_title(f"{title}: the model on {where}")
            else:
                for key, (label, color) in candidates.items():
                    raw, avg = series(key), series(f"{key}_avg")
                    if not raw:
                        continue
                    if avg:  # the trend, over faint raw points
                        ax.plot(*zip(*raw), "o", color=color, alpha=0.25, markersize=3 if dense else 5)
                        ax.plot(*zip(*avg), "-", color=color, label=f"{label}, moving average")
                    else:
                        ax.plot(
                            *zip(*raw),
                            "-",
                            color=color,
                            marker="o",
                            markersize=3 if dense else 6,
                            label=label,
                        )
                ax.set_title(f"{title}: the candidates of each update" if has_heldout else title)
            ax.set_ylim(-3, 103)
            if dense:
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            else:
                ax.set_xticks(steps)
            ax.set_xlabel(x_label)
            ax.set_ylabel("rate (%)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8, loc="best", framealpha=0.6)
    return path


def plot_rl_arms(histories: dict[str, Sequence[dict[str, Any]]], path: str) -> str:
    """Several RL arms' curves in one PNG, to compare methods: the held-out faster-than-target and pass rates
    with their intervals (top), and the moving average of the candidates' pass rate (bottom), one colour per
    arm.

    Args:
        histories: Arm name to its history, as for [`plot_rl_curves`].
        path: Where to write the PNG.

    Example:
        ```python
        >>> arms = {"RRHF": [{"step": 0, "eval_pass_rate": 0.5}], "GRPO": [{"step": 0, "eval_pass_rate": 0.5}]}
        >>> plot_rl_arms(arms, "/tmp/rl_arms.png")  # doctest: +SKIP
        '/tmp/rl_arms.png'
        ```
    """
    with _figure(path, 2) as (top, bottom):
        n = 0
        for i, (arm, history) in enumerate(histories.items()):
            color = f"C{i}"
            for key, style, label in (
                ("eval_beats_target_rate", "-", "faster than target"),
                ("eval_pass_rate", "--", "pass"),
            ):
                points = [h for h in history if h.get(key) is not None]
                if not points:
                    continue
                n = max(n, *(h.get("eval_n") or 0 for h in points))
                xs = [h["step"] for h in points]
                ys = [100 * h[key] for h in points]
                cis = [h.get(key.replace("_rate", "_ci")) for h in points]
                err = None
                if all(ci is not None for ci in cis):
                    err = [
                        [y - 100 * c[0] for y, c in zip(ys, cis)],
                        [100 * c[1] - y for y, c in zip(ys, cis)],
                    ]
                top.errorbar(xs, ys, yerr=err, fmt=style, color=color, marker="o", capsize=3,
                             label=f"{arm}: {label}")  # fmt: skip
            raw = [(h["step"], 100 * h["pass_rate"]) for h in history if h.get("pass_rate") is not None]
            avg = [
                (h["step"], 100 * h["pass_rate_avg"]) for h in history if h.get("pass_rate_avg") is not None
            ]
            if raw:
                bottom.plot(*zip(*raw), "o", color=color, alpha=0.25, markersize=4)
            if avg:
                bottom.plot(*zip(*avg), "-", color=color, label=f"{arm}: pass, moving average")
        where = f"{n} held-out problems, 95% intervals" if n else "held-out problems"
        top.set_title(f"RL arms on {where}")
        bottom.set_title("the candidates of each update")
        for ax in (top, bottom):
            ax.set_ylim(-3, 103)
            ax.set_xlabel("RL update (optimizer step)")
            ax.set_ylabel("rate (%)")
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8, loc="best", framealpha=0.6)
    return path


def plot_loss_curves(
    series: dict[str, Sequence[dict[str, float]]], path: str, title: str = "SFT training loss"
) -> str:
    """Training-loss curves as a PNG, e.g. stage 1 SFT and the "SFT only" continuation, to see a plateau.

    Args:
        series: Label to points `{"step": int, "loss": float}`, as in `Trainer.state.log_history`. A series
            may start at an offset, e.g. a continuation numbered after the steps it continues.
        path: Where to write the PNG.
    """
    with _figure(path) as ax:
        for label, points in series.items():
            if points:
                ax.plot([p["step"] for p in points], [p["loss"] for p in points], label=label, linewidth=1)
        _loss_axes(ax)
        ax.set_title(title)
        ax.legend(fontsize=8)
    return path


def plot_pretrain_curve(
    losses: Sequence[dict[str, float]],
    points: Sequence[dict[str, float]],
    path: str,
    title: str = "Bundled checkpoint: SFT from scratch",
) -> str:
    """Training loss and held-out rates against optimizer steps, as a PNG.

    Args:
        losses: ``{"step", "loss"}`` points as logged.
        points: ``{"step", "pass_rate", "compile_rate"}`` (fractions) from evaluating saved checkpoints.
        path: Where to write the PNG.
    """
    with _figure(path) as ax:
        if losses:
            ax.plot(
                [p["step"] for p in losses],
                [p["loss"] for p in losses],
                color="C7",
                linewidth=1,
                label="loss",
            )
        _loss_axes(ax)
        right = ax.twinx()
        for key, label, color in (
            ("pass_rate", "pass (held-out)", "C0"),
            ("compile_rate", "compile (held-out)", "C2"),
        ):
            pts = [(p["step"], 100 * p[key]) for p in points if p.get(key) is not None]
            if pts:
                right.plot(*zip(*pts), "o-", color=color, label=label)
        right.set_ylim(-3, 103)
        right.set_ylabel("rate (%)")
        handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
        ax.legend(handles=handles, fontsize=8, loc="center right")
        ax.set_title(title)
    return path
