"""The recipes' presets: named sets of defaults for `examples/train_pie.py`, and the settings that the recipes
share (how the small T5 is built and fine-tuned from scratch). Flags given on a recipe's command line, or in its
``--config`` YAML, still win over a preset.

Example:
    ```python
    >>> from perfrl_trl.presets import preset_defaults
    >>> preset_defaults("compare")["rl_prompts"], preset_defaults("compare")["output_dir"]
    (512, 'outputs/train_pie-compare')
    ```
"""

from __future__ import annotations

import torch

# The small T5 built from its config, and how SFT trains it: the bundled checkpoint's settings
# (examples/pretrain_checkpoint.py), which the scratch preset shares (see docs/results.md for what it reaches).
SFT_FROM_SCRATCH = dict(
    model_size="small",
    dropout_rate=0.0,
    per_device_train_batch_size=16,
    learning_rate=1e-3,
    sft_bf16=True,
)
# Every preset starts from these; flags given on the command line (or in --config) still win.
BASE = dict(
    report_to="none",
    save_strategy="no",
    logging_steps=10,
    max_completion_length=256,  # >= 99% of the bundled targets fit with their EOS (test_benchmark.py)
    max_prompt_length=256,
)
COMPARE = dict(  # RRHF vs SFT-only from the bundled checkpoint
    n_per_family=130,  # 507 held-out test problems
    # Half the train problems lose their targets: SFT-only learns from the other half, RRHF from these
    # problems' tests and timing alone, one pass over 512 of them (no prompt twice).
    tests_only_fraction=0.5,
    rl_steps=1,
    rl_prompts=512,
    num_random_samples=4,  # and the default greedy decode: 5 candidates per prompt
    generate_ahead=True,
    per_device_train_batch_size=8,
    rrhf_learning_rate=5e-5,
    execution_n_trials=3,
    rank_on_differing_tokens=True,
    max_eval=600,
    # The RL curve: checkpoints saved at 4 points, judged after training (outside the timed stage) on 320
    # validation problems, where a 95% interval is about +-5 points.
    val_size=320,
    rl_eval_points=4,
)
# RL on real programs from their tests alone: PIE's adaptation half against SFT-only on the synthetic
# data, both judged on every program of PIE's evaluation half that passes its own tests.
ADAPT = dict(
    COMPARE,
    dataset="pie",
    tests_only_fraction=0.0,
    rl_prompts=10**6,  # every adaptation program, once
    max_eval=10**6,  # every evaluation program
    val_size=24,
    max_prompt_length=512,
    max_completion_length=512,
)
# About 10 minutes on 2 CPU cores, from the bundled checkpoint: the compare preset, smaller (its curve's two
# held-out points and the start on 48 validation problems). 104 prompts are 13 updates, as many as the compare
# settings made in 240 s in the ablation (docs/results.md), where they beat the start on 507 held-out problems
# in one round of two.
DEFAULT = dict(
    COMPARE,
    n_per_family=20,
    rl_prompts=104,
    max_eval=48,
    val_size=48,
    rl_eval_points=2,
    generation_batch_size=16,
)

# RRHF against GRPO (TRL's GRPOTrainer, stage 2c) and SFT-only, from the bundled causal checkpoint, on the compare
# preset's 507 held-out problems: 128 tests-only prompts for RRHF (16 updates; about 6 minutes on 2 CPU cores
# before the update's faster pass), and its wall time for each other arm; the curve's two points on 160
# validation problems.
GRPO = dict(
    COMPARE,
    model_name_or_path="bundled-causal",
    grpo=True,
    rl_prompts=128,
    val_size=160,
    rl_eval_points=2,
)

PRESETS = {
    "default": DEFAULT,
    "compare": COMPARE,
    "grpo": GRPO,
    "adapt": ADAPT,
    # Training from scratch, one flag away: 240 s of SFT, then the default's comparison (~10 minutes, not timed).
    "scratch": dict(DEFAULT, **SFT_FROM_SCRATCH, from_scratch=True, sft_seconds=240),
    # For tests: seconds, a tiny model from scratch.
    "tiny": dict(
        from_scratch=True,
        model_size="tiny",
        n_per_family=10,
        tests_only_fraction=0.5,
        sft_steps=20,
        rl_steps=2,
        rl_prompts=6,
        max_eval=8,
        val_size=3,
        families="sum_formula,string_concat,membership_set",
        per_device_train_batch_size=2,
        max_completion_length=48,
        max_prompt_length=160,
        learning_rate=1e-3,
        rrhf_learning_rate=1e-3,
        execution_n_trials=3,
        eval_num_beams=2,
    ),
    "paper": dict(
        dataset="pie",
        from_scratch=False,
        sft_steps=20000,
        rl_steps=10,
        rl_prompts=2000,
        max_eval=1000,
        val_size=100,
        learning_rate=5e-5,
        per_device_train_batch_size=8,
        max_completion_length=512,
        max_prompt_length=512,
        rrhf_learning_rate=2e-5,
        bf16=torch.cuda.is_available(),
    ),
}


def preset_defaults(preset: str) -> dict:
    """Every default that `examples/train_pie.py --preset PRESET` sets, over those of its dataclasses.

    Args:
        preset: One of ``PRESETS``.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    return {"output_dir": f"outputs/train_pie-{preset}", **BASE, **PRESETS[preset]}
