"""What makes RL gain faster per minute: RRHF settings ("levers") side by side, each trained for the same wall
time from the same start, all judged together on the same held-out problems.

    python examples/rl_ablation.py                                  # every lever, 240 s each, 507 problems
    python examples/rl_ablation.py --levers "compare defaults,tune on faster only" --rl_seconds 120

Each lever is a set of `RRHFConfig` overrides on the compare preset (perfrl_trl/presets.py), trained from the
bundled checkpoint on the compare preset's tests-only prompts (or, with ``"prompts": N``, on the first N of them). The held-out problems are a prefix of the compare
preset's (same seed, same shuffle), so each lever is also paired, problem by problem, with a committed
`--preset compare` run's RRHF arm (`--reference`). A lever's trained model is kept in its folder, so a stopped run
resumes where it was.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from trl import TrlParser

from perfrl_trl.comparison import beats_target_share, evaluate_models, paired_tests
from perfrl_trl.data import tests_only_split
from perfrl_trl.data.benchmark import build_benchmark
from perfrl_trl.metrics.intervals import wilson_interval
from perfrl_trl.models import BUNDLED_CHECKPOINT
from perfrl_trl.presets import preset_defaults
from perfrl_trl.reporting import mcnemar_exact, provenance
from perfrl_trl.trainer import RRHFConfig, RRHFTrainer
from perfrl_trl.trainer.callbacks import BudgetProgress, RLCurve, WallClockBudget

START = "bundled checkpoint"
# The committed compare run (seed 42) whose RRHF arm the levers are paired with by default.
REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "results" / "compare-tests-only-s42.json"
# RRHFConfig overrides of each lever over the compare preset's RRHF arm.
LEVERS: dict[str, dict] = {
    "compare defaults": {},
    # Imitate only programs that beat their slow input (R4), not every passing one (which may be the input).
    "tune on faster only": {"tuning_min_reward": 2.0},
    "learning rate x3": {"learning_rate": 1.5e-4},
    "learning rate x10": {"learning_rate": 5e-4},
    "9 candidates per prompt": {"num_random_samples": 8},
    "rank weight 0.25": {"rank_loss_weight": 0.25},
    "rank margin 0.1": {"rank_margin": 0.1},
    "faster only, learning rate x3": {"tuning_min_reward": 2.0, "learning_rate": 1.5e-4},
    # The SFT term alone (RRHF's a = 0: imitate each prompt's best passing candidate), at three learning rates:
    # whether the ranking term is what makes a larger step collapse the model.
    "imitation only": {"rank_loss_weight": 0.0},
    "imitation only, learning rate x3": {"rank_loss_weight": 0.0, "learning_rate": 1.5e-4},
    "imitation only, learning rate x10": {"rank_loss_weight": 0.0, "learning_rate": 5e-4},
    # Fewer prompts, seen several times: the budget's updates spent on 48 prompts instead of 130 or so.
    "3 passes over 48 prompts": {"prompts": 48, "num_train_epochs": 3},
    # Samples nearer the mode: the held-out decode is a beam search, which a gain found among samples drawn far
    # from the mode (temperature 1, where samples pass about 40% against the decode's 65%) may not reach.
    "sampling temperature 0.7": {"temperature": 0.7},
    "sampling temperature 0.5": {"temperature": 0.5},
    # Groups that give the loss nothing (candidates that all fail) replaced by groups of fresh prompts before
    # each update; groups judged beyond a step's need train in the next.
    "dynamic sampling (empty groups)": {"dynamic_sampling_batches": 2},
}


@dataclass
class AblationArguments:
    levers: str = field(
        default="all",
        metadata={
            "help": f"Comma-separated names of {list(LEVERS)}, or 'all' (a name with a comma in it is read "
            "whole)."
        },
    )
    rl_seconds: float = field(default=240.0, metadata={"help": "Each lever's RRHF wall time, seconds."})
    n_per_family: int = field(default=130, metadata={"help": "Bundled benchmark: problems per family."})
    tests_only_fraction: float = field(default=0.5, metadata={"help": "As in examples/train_pie.py."})
    rl_prompts: int = field(
        default=512, metadata={"help": "Tests-only prompts each lever draws from, in order."}
    )
    max_eval: int = field(
        default=preset_defaults("compare")["max_eval"],
        metadata={"help": "Held-out problems: the compare preset's first ones."},
    )
    reference: str | None = field(
        default=str(REFERENCE),
        metadata={
            "help": "A `--preset compare` results JSON whose RRHF arm each lever is paired with ('': none)."
        },
    )

    def __post_init__(self):
        unknown = set(self.lever_names()) - set(LEVERS)
        if unknown:
            raise ValueError(f"--levers: unknown {sorted(unknown)}; choose from {list(LEVERS)}")
        if not self.rl_seconds > 0:
            raise ValueError(f"--rl_seconds must be positive, got {self.rl_seconds}")

    def lever_names(self) -> list[str]:
        if self.levers == "all":
            return list(LEVERS)
        # Some names hold a comma themselves: the longest run of pieces that names a lever is one name.
        pieces, names, i = self.levers.split(","), [], 0
        while i < len(pieces):
            ends = [j for j in range(i + 1, len(pieces) + 1) if ",".join(pieces[i:j]).strip() in LEVERS]
            end = max(ends, default=i + 1)
            names.append(",".join(pieces[i:end]).strip())
            i = end
        return [name for name in names if name]


def parse_args() -> tuple[AblationArguments, RRHFConfig]:
    parser = TrlParser((AblationArguments, RRHFConfig))
    # The compare preset's trainer settings; the data settings are this script's own (its held-out set is a
    # prefix of the preset's).
    names = {f.name for f in dataclasses.fields(RRHFConfig)}
    defaults = preset_defaults("compare")
    defaults["output_dir"] = "outputs/rl_ablation"
    defaults["learning_rate"] = defaults.pop("rrhf_learning_rate")
    parser.set_defaults(**{k: v for k, v in defaults.items() if k in names})
    return parser.parse_args_and_config()


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def lever_settings(name: str, config: RRHFConfig, rl_train):
    """A lever's trainer settings and prompts: its overrides over `config`, one pass unless it says more."""
    overrides = dict(LEVERS[name])
    prompts = overrides.pop("prompts", None)
    if prompts is not None:
        rl_train = rl_train.select(range(min(prompts, len(rl_train))))
    settings = {
        "output_dir": os.path.join(config.output_dir, slug(name)),
        "num_train_epochs": 1,
        "max_steps": -1,
        "lr_scheduler_type": "constant",
        "eval_strategy": "no",
        "disable_tqdm": True,  # the budget's own bar shows progress
        "logging_steps": 1,  # every update's loss and metrics, kept in lever.json
        **overrides,
    }
    return dataclasses.replace(config, **settings), rl_train


def train_lever(name: str, config: RRHFConfig, rl_train, seconds: float) -> tuple[str, list[dict]]:
    """Train one lever for `seconds` from the bundled checkpoint; returns its folder and per-update rates."""
    out = os.path.join(config.output_dir, slug(name))
    done = os.path.join(out, "lever.json")
    if os.path.exists(done):  # trained by an earlier, stopped run
        with open(done) as fh:
            return out, json.load(fh)["rl_curve"]
    lever, rl_train = lever_settings(name, config, rl_train)
    curve = RLCurve()
    trainer = RRHFTrainer(
        str(BUNDLED_CHECKPOINT),
        args=lever,
        train_dataset=rl_train,
        callbacks=[curve, WallClockBudget(seconds), BudgetProgress(seconds)],
    )
    started = time.monotonic()
    trainer.train()
    trainer.save_model(out)
    history = curve.history(trainer.candidate_log)
    with open(done, "w") as fh:
        json.dump(
            {
                "lever": name,
                "overrides": LEVERS[name],
                "seconds": time.monotonic() - started,
                "updates": trainer.state.global_step,
                "rl_curve": history,
                "log_history": trainer.state.log_history,
            },
            fh,
            indent=1,
        )
    print(f"{name}: {trainer.state.global_step} updates in {time.monotonic() - started:.0f}s", flush=True)
    return out, history


def reference_outcomes(path: str | None) -> tuple[str, dict[str, dict]] | None:
    """The committed compare run's RRHF arm, per problem id (None without `--reference`)."""
    if not path:
        return None
    try:
        with open(path) as fh:
            outcomes = json.load(fh)["outcomes"]
        arm = next(name for name in outcomes if "RRHF" in name)
        return arm, {o["problem_id"]: o for o in outcomes[arm]}
    except (OSError, ValueError, KeyError, TypeError, StopIteration) as e:
        raise SystemExit(
            f"--reference {path}: not a `--preset compare` results JSON with an RRHF arm's outcomes "
            f"({type(e).__name__}: {e}); pass --reference '' to pair with none"
        ) from None


def plot_levers(rows: list[dict], path: str) -> str:
    """Each lever's faster-than-target share with its 95% interval, and its pass rate, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [row["lever"] for row in rows]
    share = [row["beats_target_share"] for row in rows]
    low = [s - row["beats_target_ci"][0] for s, row in zip(share, rows)]
    high = [row["beats_target_ci"][1] - s for s, row in zip(share, rows)]
    fig, ax = plt.subplots(figsize=(7.0, 0.45 * len(rows) + 1.6), dpi=120)
    y = list(range(len(rows)))[::-1]
    ax.errorbar(
        share, y, xerr=[low, high], fmt="o", color="C3", capsize=3, label="faster than target (95% CI)"
    )
    ax.plot([row["pass_rate"] for row in rows], y, "s", color="C0", label="pass")
    ax.set_yticks(y, names)
    ax.set_xlim(0, 100)
    ax.set_xlabel(f"% of {rows[0]['n']} held-out problems")
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=8, loc="center")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def main():
    args, config = parse_args()
    made_by = provenance()  # now: the checkout may move during a long run
    seed = config.seed if config.data_seed is None else config.data_seed
    data = build_benchmark(n_per_family=args.n_per_family, seed=seed)
    _, _, rl_train = tests_only_split(data["train"], args.tests_only_fraction, args.rl_prompts, seed)
    # The compare preset's held-out problems in its order (train_pie.held_out_splits), then a prefix of them.
    compare_eval = preset_defaults("compare")["max_eval"]
    test = data["test"].shuffle(seed=seed).select(range(min(compare_eval, len(data["test"]))))
    test = test.select(range(min(args.max_eval, len(test))))
    print(
        f"{len(rl_train)} tests-only RL prompts, {len(test)} held-out problems, {args.rl_seconds:.0f}s a lever",
        flush=True,
    )

    models, curves = {START: str(BUNDLED_CHECKPOINT)}, {}
    for name in args.lever_names():
        models[name], curves[name] = train_lever(name, config, rl_train, args.rl_seconds)
    evals = evaluate_models(models, test, config)

    reference = reference_outcomes(args.reference)
    rows = []
    base = evals.get("compare defaults")
    for name in models:
        share = beats_target_share(evals[name], kinds=None)
        if not share["n"]:
            raise SystemExit(
                f"no held-out problem's target passed, so no lever can be ranked ({len(test)} judged)"
            )
        lo, hi = wilson_interval(share["beats"], share["n"])
        row = {
            "lever": name,
            "overrides": LEVERS.get(name, {}),
            "beats_target": share["beats"],
            "n": share["n"],
            "beats_target_share": 100 * share["share"],
            "beats_target_ci": [100 * lo, 100 * hi],
            "pass_rate": evals[name].summary["percent_passed"],
            "updates": len([h for h in curves.get(name, []) if h.get("pass_rate") is not None]),
        }
        for label, other in (("vs_start", evals[START]), ("vs_compare_defaults", base)):
            if other is not None and other is not evals[name]:
                t = paired_tests(evals[name], other)
                row[label] = {k: t[k] for k in ("beats_p", "beats_only_a", "beats_only_b", "pass_p")}
        if reference:
            arm, by_id = reference
            mine = [o for o in evals[name].outcomes if o.beats_target is not None and o.problem_id in by_id]
            theirs = [bool(by_id[o.problem_id]["beats_target"]) for o in mine]
            ours = [bool(o.beats_target) for o in mine]
            row["vs_reference"] = {
                "arm": arm,
                "beats_p": mcnemar_exact(ours, theirs),
                "beats_only_a": sum(a and not b for a, b in zip(ours, theirs)),
                "beats_only_b": sum(b and not a for a, b in zip(ours, theirs)),
            }
        rows.append(row)
        print(
            f"{name:32s} faster than target {row['beats_target_share']:5.1f}% [{lo * 100:.1f}, {hi * 100:.1f}] "
            f"pass {row['pass_rate']:5.1f}%  "
            + "  ".join(
                f"{k} p={v['beats_p']:.3g} ({v['beats_only_a']} vs {v['beats_only_b']})"
                for k, v in row.items()
                if k.startswith("vs_")
            )
        )
    out = os.path.join(config.output_dir, "rl_ablation.json")
    with open(out, "w") as fh:
        json.dump(
            {
                "provenance": made_by,
                "rl_seconds": args.rl_seconds,
                "held_out": len(test),
                "rl_prompts": len(rl_train),
                "seed": seed,
                "rows": rows,
                "rl_curves": curves,
                "outcomes": {name: e.to_dict()["outcomes"] for name, e in evals.items()},
            },
            fh,
            indent=1,
        )
    plot_levers(rows, os.path.join(config.output_dir, "rl_ablation.png"))
    print(f"wrote {out} and rl_ablation.png")


if __name__ == "__main__":
    main()
