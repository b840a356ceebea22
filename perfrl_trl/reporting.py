"""Results of a PerfRL run as people read them: the paper's Table I (with intervals) and Fig. 2 (a PNG)."""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator, Sequence
from typing import Any

COLUMNS = (
    ("%OPT", "percent_optimized"),
    ("SP (PIE)", "speedup"),
    ("RTR % (all)", "runtime_reduction"),
    ("compile", "percent_compiled"),
    ("pass", "percent_passed"),
)


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
            keys plus ``train_time_s``, ``energy_kj``, ``peak_w`` and ``energy_method``.
        notes: Lines printed under the table (significance, estimates).
    """
    header = (
        ["model", "n"] + [name for name, _ in COLUMNS] + ["train time (s)", "energy (kJ)", "peak power (W)"]
    )
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, s in rows.items():
        energy = s.get("energy_kj")
        method = s.get("energy_method")
        mark = "*" if method == "estimate" else ""
        cells = [name, str(s.get("n_samples", ""))] + [_cell(s, key) for _, key in COLUMNS]
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


def write_results(
    path_prefix: str, rows: dict[str, dict[str, Any]], notes: Sequence[str] = (), extra: dict | None = None
) -> tuple[str, str]:
    """Write ``<prefix>.json`` and ``<prefix>.md``; returns both paths."""
    os.makedirs(os.path.dirname(os.path.abspath(path_prefix)), exist_ok=True)
    md = markdown_table(rows, notes)
    with open(path_prefix + ".md", "w") as fh:
        fh.write(md + "\n")
    with open(path_prefix + ".json", "w") as fh:
        json.dump({"rows": rows, "notes": list(notes), **(extra or {})}, fh, indent=2, default=str)
    return path_prefix + ".json", path_prefix + ".md"


@contextlib.contextmanager
def _figure(path: str) -> Iterator[Any]:
    """One PNG figure of the size every plot here uses: yields its axes, then lays out, saves and closes it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    try:
        yield ax
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


def plot_rl_curves(history: Sequence[dict[str, float]], path: str, title: str = "PerfRL: RRHF steps") -> str:
    """The paper's Fig. 2: pass and optimisation rates per RL step, as a PNG.

    Args:
        history: One dict per RL step with ``step`` and any of ``pass_rate``, ``opt_rate``, ``compile_rate``
            (fractions of the generated candidates) and ``eval_compile_rate``/``eval_pass_rate``/``eval_opt_rate``
            (held-out).
        path: Where to write the PNG.
    """
    steps = [h["step"] for h in history]
    styles = {
        "compile_rate": ("compile (candidates)", "C2", ":"),
        "pass_rate": ("pass (candidates)", "C0", "-"),
        "opt_rate": ("optimised (candidates)", "C1", "-"),
        "eval_compile_rate": ("compile (held-out)", "C2", "-."),
        "eval_pass_rate": ("pass (held-out)", "C0", "--"),
        "eval_opt_rate": ("%OPT (held-out)", "C1", "--"),
    }
    with _figure(path) as ax:
        for key, (label, color, style) in styles.items():
            points = [(s, 100 * h[key]) for s, h in zip(steps, history) if h.get(key) is not None]
            if points:
                ax.plot(*zip(*points), style, color=color, marker="o", label=label)
        ax.set_ylim(-3, 103)
        ax.set_xticks(steps)
        ax.set_xlabel("RL step (one regeneration pass)")
        ax.set_ylabel("rate (%)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
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
            ax.plot([p["step"] for p in losses], [p["loss"] for p in losses], color="C7", linewidth=1, label="loss")
        _loss_axes(ax)
        right = ax.twinx()
        for key, label, color in (("pass_rate", "pass (held-out)", "C0"), ("compile_rate", "compile (held-out)", "C2")):
            pts = [(p["step"], 100 * p[key]) for p in points if p.get(key) is not None]
            if pts:
                right.plot(*zip(*pts), "o-", color=color, label=label)
        right.set_ylim(-3, 103)
        right.set_ylabel("rate (%)")
        handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
        ax.legend(handles=handles, fontsize=8, loc="center right")
        ax.set_title(title)
    return path
