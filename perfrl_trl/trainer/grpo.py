"""TRL's `GRPOTrainer` as the field's baseline to RRHF: the same reward, candidates, prompts and budget.

`grpo_arguments` turns an [`RRHFConfig`] into the `trl.GRPOConfig` that matches it (completions per prompt,
prompts per update, sampling, learning rate, seed, device), and [`LoggedUnitTestReward`] is the unit-test reward
with RRHF's speed-aware ranking within R4 expressed as a reward (``graded=True``), which also records the
candidates' rates of each update in the form `RLCurve.history` reads. [`train_grpo`] runs it for a wall-clock
budget, so that a comparison can give GRPO exactly the time the RRHF arm took.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..execution import ExecutionConfig
from ..rewards import UnitTestRewardFunction
from .callbacks import UNCAPPED_STEPS, add_wall_clock_budget
from .config import RRHFConfig


def grpo_arguments(config: RRHFConfig, output_dir: str, learning_rate: float | None = None, **overrides):
    """The `trl.GRPOConfig` that matches an RRHF run's candidates, batches and optimiser.

    - Completions per prompt: RRHF's random samples plus its greedy decode (GRPO samples them all: its
      advantage needs on-policy samples, and a greedy decode would repeat across the group).
    - Prompts per update: RRHF's ``per_device_train_batch_size`` (GRPO counts completions there, so it is
      multiplied by the group size); the same gradient accumulation.
    - Sampling (temperature, top-k, top-p, repetition penalty), completion length, seed, device and precision
      as RRHF's; a constant learning rate with no warm-up, as the recipes give RRHF.
    - TRL's own defaults otherwise: ``beta=0`` (no KL term and no reference model, as DAPO and Dr. GRPO),
      ``loss_type="dapo"`` (token-level normalisation, no length bias) and group-scaled advantages.

    Args:
        config: The RRHF run's configuration.
        output_dir: Where GRPO writes its checkpoints.
        learning_rate: `None`: ``config.learning_rate``.
        overrides: Any other `GRPOConfig` field (they win).

    Example:
        ```python
        >>> from perfrl_trl import RRHFConfig
        >>> args = grpo_arguments(RRHFConfig("/tmp/rrhf", num_random_samples=4, per_device_train_batch_size=8,
        ...                                  use_cpu=True), "/tmp/grpo")
        >>> args.num_generations, args.per_device_train_batch_size, args.beta
        (5, 40, 0.0)

        ```
    """
    from trl import GRPOConfig

    generations = config.num_random_samples + config.num_greedy_samples
    if generations < 2:
        raise ValueError(
            f"GRPO needs at least 2 completions per prompt; the RRHF config has {generations} "
            "(num_random_samples + num_greedy_samples)"
        )
    kwargs = dict(
        output_dir=output_dir,
        num_generations=generations,
        per_device_train_batch_size=config.per_device_train_batch_size * generations,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.learning_rate if learning_rate is None else learning_rate,
        lr_scheduler_type="constant",
        warmup_steps=0,
        max_completion_length=config.max_completion_length,
        temperature=config.temperature,
        top_k=config.top_k,
        top_p=config.top_p,
        repetition_penalty=config.repetition_penalty,
        seed=config.seed,
        data_seed=config.data_seed,
        use_cpu=config.use_cpu,
        bf16=config.bf16,
        max_grad_norm=config.max_grad_norm,
        weight_decay=config.weight_decay,
        logging_steps=1,
        report_to=[],
        disable_tqdm=config.disable_tqdm,
        save_strategy="no",
    )
    kwargs.update(overrides)
    return GRPOConfig(**kwargs)


class LoggedUnitTestReward:
    """The unit-test reward for `GRPOTrainer`, recording each update's candidate rates.

    A TRL reward function (``f(prompts, completions, **columns) -> list[float]``) over a
    [`UnitTestRewardFunction`]. Each call is one generation batch, which `GRPOTrainer` lays out as consecutive
    groups of `num_generations` completions of one prompt; the call appends to `log` the entry that
    `RRHFTrainer.candidate_log` would hold for an update: ``step`` (1-based), ``compile_rate``, ``pass_rate``,
    ``opt_rate`` (R4) and ``groups_without_signal`` (groups whose rewards all tie, which teach GRPO nothing).

    Args:
        reward: The unit-test reward (``graded=True`` ranks R4 candidates by speed-up, as RRHF does).
        num_generations: Completions per prompt (`GRPOConfig.num_generations`).

    Example:
        ```python
        >>> reward = LoggedUnitTestReward(UnitTestRewardFunction(graded=True), num_generations=5)
        >>> reward.__name__
        'unit_test_reward'

        ```
    """

    def __init__(self, reward: UnitTestRewardFunction, num_generations: int):
        self.reward = reward
        self.num_generations = num_generations
        self.log: list[dict[str, float]] = []
        self.__name__ = reward.__name__  # TRL logs rewards/<name>/...

    def __call__(self, prompts: Sequence | None = None, completions: Sequence | None = None, **columns):
        completions, tests, baselines = self.reward._columns(completions, columns)
        details = self.reward.score(completions, tests, baselines)
        rewards = [d.reward for d in details]
        n, g = len(details), self.num_generations
        groups = [rewards[i : i + g] for i in range(0, n, g)]
        self.log.append(
            {
                "step": len(self.log) + 1,
                "compile_rate": sum(d.tier != "R1" for d in details) / n,
                "pass_rate": sum(d.passed for d in details) / n,
                "opt_rate": sum(d.tier == "R4" for d in details) / n,
                "groups_without_signal": sum(max(grp) == min(grp) for grp in groups) / len(groups),
            }
        )
        return rewards


def train_grpo(
    model_path: str,
    config: RRHFConfig,
    train_dataset,
    seconds: float | None = None,
    learning_rate: float | None = None,
    output_dir: str | None = None,
    **overrides,
):
    """Train with TRL's `GRPOTrainer` and the unit-test reward, for a wall-clock budget.

    Args:
        model_path: A causal LM's folder or Hub id (`GRPOTrainer` does not take encoder-decoders).
        config: The RRHF configuration whose candidates, batches, reward tiers and judge GRPO shares
            ([`grpo_arguments`]).
        train_dataset: Rows with ``prompt``, ``tests`` and ``input_code`` (the slow program: the baseline).
        seconds: Stop after this much training time (`None`: one pass over the rows).
        learning_rate: As for [`grpo_arguments`].
        output_dir: `None`: ``config.output_dir``.
        overrides: More `GRPOConfig` fields (for example ``save_strategy``/``save_steps`` for a curve).

    Returns:
        ``(trainer, reward)``: the trained `GRPOTrainer` and its [`LoggedUnitTestReward`] (``reward.log``: the
        candidates' rates per update).
    """
    from trl import GRPOTrainer

    from ..models import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(model_path)
    if model.config.is_encoder_decoder:
        raise ValueError(
            f"GRPO needs a causal LM, and {model_path} is an encoder-decoder; start from a decoder-only model "
            "(for example 'bundled-causal')"
        )
    if seconds is not None:
        overrides = {"max_steps": UNCAPPED_STEPS, **overrides}
    args = grpo_arguments(config, output_dir or config.output_dir, learning_rate, **overrides)
    execution = ExecutionConfig(**config.execution_config_kwargs())
    reward = LoggedUnitTestReward(
        UnitTestRewardFunction(values=config.reward_tier_values, graded=True, execution_config=execution),
        args.num_generations,
    )
    trainer = GRPOTrainer(
        model=model, reward_funcs=reward, args=args, train_dataset=train_dataset, processing_class=tokenizer
    )
    if seconds is not None:
        add_wall_clock_budget(trainer, seconds)
    trainer.train()
    return trainer, reward
