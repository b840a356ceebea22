"""Configuration of PerfRL's RRHF trainer."""

import warnings
from dataclasses import dataclass, field
from typing import Any, ClassVar

from transformers import TrainingArguments

from ..execution.counters import COST_MODES
from ..execution.tiers import DEFAULT_MARGIN, DEFAULT_TIER_REWARDS, validate_tier_rewards
from ..loss import DEFAULT_PRIORITY, RRHFLossOptions, SourceKind

__all__ = ["RRHFConfig"]


@dataclass
class RRHFConfig(TrainingArguments):
    r"""
    Configuration class for the `RRHFTrainer` (PerfRL, arXiv 2312.05657).

    Only the parameters specific to RRHF training are listed here; see [`~transformers.TrainingArguments`] for the
    rest. Defaults that differ from [`~transformers.TrainingArguments`]: `remove_unused_columns=False` (the reward
    needs the dataset's `tests` and `input_code` columns) and `logging_steps=10`. Works with
    [`~transformers.HfArgumentParser`], so every field is also a command-line flag.

    Parameters:
        > Parameters that control the candidates (per prompt: random samples, greedy decodes and the target)

        num_random_samples (`int`, *optional*, defaults to `2`):
            Number of sampled completions per prompt.
        temperature (`float`, *optional*, defaults to `1.0`):
            Sampling temperature, must be positive.
        top_k (`int`, *optional*, defaults to `50`):
            Top-k filtering for sampling; `0` disables it.
        top_p (`float`, *optional*, defaults to `1.0`):
            Nucleus sampling threshold in `(0, 1]`.
        num_greedy_samples (`int`, *optional*, defaults to `1`):
            Number of greedy completions per prompt, `0` or `1` (greedy decoding is deterministic).
        include_target (`bool`, *optional*, defaults to `True`):
            Whether the reference fast program is a candidate.
        rewrite_candidates (`int`, *optional*, defaults to `0`):
            Up to this many of the library's generic rewrites of the row's `input_code`
            (`perfrl_trl.data.rewrite_pairs.candidate_rewrites`, the composition of every rewrite first) join its
            group as candidates. They need the slow program only, never a target, and are judged like the
            others, so a tests-only prompt whose samples all fail can still rank a correct (or faster) program
            first. In a tie of rewards the model's own candidates win. `0` (the paper): none.
        max_prompt_length (`int` or `None`, *optional*, defaults to `512`):
            Longest prompt in tokens; longer prompts are truncated. `None` keeps them whole.
        max_completion_length (`int`, *optional*, defaults to `512`):
            Most new tokens generated per candidate, also the longest candidate used in the loss.
        generation_batch_size (`int` or `None`, *optional*):
            Prompts per `generate` call; defaults to `per_device_train_batch_size`.
        generate_ahead (`bool`, *optional*, defaults to `False`):
            Generate the next step's candidates with the current weights before this step's update, so the
            sandbox judges them while the model trains instead of the cores waiting in turn. Candidates are
            then one update behind the policy (RRHF's loss needs no old log-probabilities, so nothing else
            changes). The last step of an epoch and of the run generate nothing ahead, and a run resumed from a
            checkpoint generates its first step's candidates anew. Off: the paper's on-policy loop.
        dynamic_sampling_batches (`int`, *optional*, defaults to `0`):
            Dynamic sampling (DAPO; verl's `filter_groups`), as it applies to RRHF: groups that give the loss
            nothing, with no ranked pair and no program to imitate (with unit-test rewards, candidates that all
            fail), are replaced before the update by groups of fresh prompts, drawn from the training data a
            micro-batch at a time, at most this many extra micro-batches per step. A group whose candidates all
            pass and tie is kept: the tuning term imitates it. A step that is still short keeps some empty
            groups, so every step trains on as many prompts as without it; groups beyond a step's need train
            first in the next step (one update behind the policy, as with `generate_ahead`), so none is thrown
            away. The prompts drawn extra are the epoch's next ones, so an epoch ends in fewer steps. With
            `tuning_min_reward` unset and a custom reward every group is imitated, so none is replaced. `0`: off.
        repetition_penalty (`float`, *optional*, defaults to `1.0`):
            Generation repetition penalty (`> 1.0` discourages repeats, a guard against degenerate programs).
        no_repeat_ngram_size (`int`, *optional*, defaults to `0`):
            Forbid repeating n-grams of this size while generating; `0` disables it.
        generation_kwargs (`dict` or `None`, *optional*):
            Extra [`~transformers.GenerationConfig`] arguments for training-time generation and the evaluation's
            beam search (JSON on the CLI).

        > Parameters that control the reward (unit tests and timing)

        reward_r1 (`float`, *optional*, defaults to `0.0`):
            Reward of tier R1: the program does not compile.
        reward_r2 (`float`, *optional*, defaults to `1.0`):
            Reward of tier R2: compiles but fails a unit test.
        reward_r3 (`float`, *optional*, defaults to `1.3`):
            Reward of tier R3: passes every unit test.
        reward_r4 (`float`, *optional*, defaults to `2.0`):
            Reward of tier R4: passes and is faster than the input program by `speedup_margin`.
        speedup_margin (`float`, *optional*, defaults to `1.10`):
            Smallest speed-up (baseline time / candidate time, `>= 1`) that counts as faster.
        reward_weights (`list[float]` or `None`, *optional*):
            Weights of the reward functions, one per function; `None` weights them all `1.0`.
        execution_timeout_s (`float`, *optional*, defaults to `5.0`):
            Wall-clock limit of one program run on one test.
        execution_n_trials (`int`, *optional*, defaults to `5`):
            Timed repeats per program.
        execution_cost (`str`, *optional*, defaults to `"cpu_time"`):
            What "faster" (R4) is measured in: `"cpu_time"` (CPU seconds over repeated trials) or
            `"instructions"` (instructions counted once per test under valgrind, the same on every machine;
            needs valgrind, see docs/cost.md).
        execution_workers (`int` or `None`, *optional*):
            Parallel sandbox workers; `None` uses this process's share of the usable cores (all of them,
            divided among the ranks launched on this machine).
        execution_kwargs (`dict` or `None`, *optional*):
            Other `perfrl_trl.execution.ExecutionConfig` arguments (JSON on the CLI).
        ray_address (`str` or `None`, *optional*):
            Judge the candidates on Ray actors on a cluster's CPU nodes: `"auto"` (`$RAY_ADDRESS`, else the
            cluster `ray start` started on this machine) or an address; `execution_workers` is then the number
            of actors. `None` judges on this machine's cores. See docs/recipes/ray.md.
        cpu_threads (`int` or `None`, *optional*):
            torch intra-op threads when training on CPU; `None` uses half the process's share of the usable
            cores (at least 1; see `perfrl_trl.execution.cores`). The sandbox workers share the cores, and
            OpenMP threads that spin-wait on busy cores made a tiny model's `generate` 33x slower here (16.4 s
            against 0.49 s with one thread).

        > Parameters that control the loss (`L = a · L_rank + L_tuning`)

        rank_loss_weight (`float`, *optional*, defaults to `1.0`):
            `a`, the weight of the ranking loss.
        length_normalize (`bool`, *optional*, defaults to `True`):
            Score candidates by their mean token log-probability (RRHF) instead of the sum.
        length_penalty (`float`, *optional*, defaults to `1.0`):
            Exponent `α` of the length in the score `Σ log p / |y|^α`; `1.0` is the paper's mean.
        tie_priority (`list[str]`, *optional*, defaults to `["random", "greedy", "target"]`):
            Which source wins when several candidates share the highest reward, first wins. Sources left out rank
            last.
        rank_margin (`float`, *optional*, defaults to `0.0`):
            Hinge margin of the ranking loss, `max(0, p_worse − p_better + margin)`.
        rank_on_differing_tokens (`bool`, *optional*, defaults to `False`):
            Score each ranked pair only on the tokens after the pair's longest common prefix, so pushing a failing
            candidate down does not move the tokens it shares with a good one (against degenerate outputs).
        rank_by_speedup (`bool`, *optional*, defaults to `True`):
            Speed-aware ranking: two candidates with the same reward (both R4) are ordered by their measured
            speed-ups when one is more than `speedup_margin` times faster than the other, and stay tied
            otherwise; the tuning term imitates a candidate that nothing outranks. Without it a sample faster
            than a partly optimised target ties with the target (both R4), and nothing prefers it. `False` is the
            paper's loss.
        tuning_min_reward (`float` or `None`, *optional*, defaults to `None`):
            A prompt whose best candidate's reward is below this has no tuning (SFT) term. `None`: `reward_r3`
            when every reward function is a `UnitTestRewardFunction` (only programs that pass every test are
            imitated; a prompt without a target may have none), else no threshold. Set it to `reward_r1` for
            the paper's loss, which imitates the best candidate whatever it is.

        > Parameters that control evaluation

        eval_num_beams (`int`, *optional*, defaults to `4`):
            Beams for evaluation-time generation.
        eval_num_return_sequences (`int`, *optional*, defaults to `2`):
            Programs kept per prompt at evaluation, at most `eval_num_beams`.
    """

    _VALID_DICT_FIELDS: ClassVar[list[str]] = [
        *TrainingArguments._VALID_DICT_FIELDS,
        "generation_kwargs",
        "execution_kwargs",
    ]

    # Overridden TrainingArguments defaults
    remove_unused_columns: bool = field(
        default=False,
        metadata={
            "help": "Keep dataset columns the model does not take; the reward needs `tests` and `input_code`."
        },
    )
    logging_steps: float = field(
        default=10,
        metadata={
            "help": "Log every X update steps (an integer, or a float in [0, 1) as a ratio of total steps)."
        },
    )

    # Candidates and generation
    num_random_samples: int = field(default=2, metadata={"help": "Number of sampled completions per prompt."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature, must be positive."})
    top_k: int = field(default=50, metadata={"help": "Top-k filtering for sampling; 0 disables it."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling threshold in (0, 1]."})
    num_greedy_samples: int = field(default=1, metadata={"help": "Greedy completions per prompt, 0 or 1."})
    include_target: bool = field(
        default=True, metadata={"help": "Use the reference fast program as a candidate."}
    )
    rewrite_candidates: int = field(
        default=0,
        metadata={
            "help": "Up to this many generic rewrites of the row's input_code join its group as candidates "
            "(they need no target); 0: none."
        },
    )
    max_prompt_length: int | None = field(
        default=512, metadata={"help": "Longest prompt in tokens (truncated beyond); None keeps them whole."}
    )
    max_completion_length: int = field(
        default=512,
        metadata={"help": "Most new tokens per candidate, also the longest candidate in the loss."},
    )
    generation_batch_size: int | None = field(
        default=None, metadata={"help": "Prompts per generate call; defaults to per_device_train_batch_size."}
    )
    repetition_penalty: float = field(
        default=1.0, metadata={"help": "Generation repetition penalty; > 1.0 discourages repeated tokens."}
    )
    no_repeat_ngram_size: int = field(
        default=0, metadata={"help": "Forbid repeating n-grams of this size while generating; 0 disables it."}
    )
    generation_kwargs: dict | str | None = field(
        default=None,
        metadata={"help": "Extra GenerationConfig arguments for generation and evaluation (JSON)."},
    )
    generate_ahead: bool = field(
        default=False,
        metadata={
            "help": "Generate the next step's candidates before this step's update, so the sandbox judges "
            "them while the model trains (one update off-policy)."
        },
    )
    dynamic_sampling_batches: int = field(
        default=0,
        metadata={
            "help": "Replace groups that give the loss nothing (all candidates fail and tie) with groups of fresh "
            "prompts before each update, drawing at most this many extra micro-batches per step (DAPO's dynamic "
            "sampling); 0: off."
        },
    )

    # Reward
    reward_r1: float = field(
        default=DEFAULT_TIER_REWARDS[0], metadata={"help": "Reward of tier R1: does not compile."}
    )
    reward_r2: float = field(
        default=DEFAULT_TIER_REWARDS[1], metadata={"help": "Reward of tier R2: compiles, fails a test."}
    )
    reward_r3: float = field(
        default=DEFAULT_TIER_REWARDS[2], metadata={"help": "Reward of tier R3: passes every test."}
    )
    reward_r4: float = field(
        default=DEFAULT_TIER_REWARDS[3], metadata={"help": "Reward of tier R4: passes and is faster."}
    )
    speedup_margin: float = field(
        default=DEFAULT_MARGIN,
        metadata={"help": "Smallest speed-up (baseline/candidate time, >= 1) that counts as faster."},
    )
    reward_weights: list[float] | None = field(
        default=None, metadata={"help": "Weights of the reward functions; None weights them all 1.0."}
    )
    execution_timeout_s: float = field(
        default=5.0, metadata={"help": "Wall-clock limit of one run on one test."}
    )
    execution_n_trials: int = field(default=5, metadata={"help": "Timed repeats per program."})
    execution_cost: str = field(
        default="cpu_time",
        metadata={"help": "What R4 is measured in: 'cpu_time' or 'instructions' (valgrind; docs/cost.md)."},
    )
    execution_workers: int | None = field(
        default=None,
        metadata={
            "help": "Parallel sandbox workers; None: the usable cores divided among this machine's ranks."
        },
    )
    cpu_threads: int | None = field(
        default=None,
        metadata={
            "help": "torch threads on CPU; None: half the usable cores, since the sandbox shares them."
        },
    )
    execution_kwargs: dict | str | None = field(
        default=None, metadata={"help": "Other perfrl_trl.execution.ExecutionConfig arguments (JSON)."}
    )
    ray_address: str | None = field(
        default=None,
        metadata={
            "help": "Judge on a Ray cluster: 'auto' ($RAY_ADDRESS or the local `ray start`) or an address."
        },
    )

    # Loss
    rank_loss_weight: float = field(default=1.0, metadata={"help": "Weight `a` of the ranking loss."})
    length_normalize: bool = field(
        default=True,
        metadata={"help": "Score candidates by mean token log-probability (RRHF) instead of the sum."},
    )
    length_penalty: float = field(
        default=1.0, metadata={"help": "Exponent of the length in the RRHF score sum(log p) / |y|^alpha."}
    )
    tie_priority: list[str] = field(
        default_factory=lambda: list(DEFAULT_PRIORITY),
        metadata={"help": "Source order that breaks ties for the best candidate, first wins."},
    )
    rank_margin: float = field(default=0.0, metadata={"help": "Hinge margin of the ranking loss."})
    rank_by_speedup: bool = field(
        default=True,
        metadata={
            "help": "Order equal-reward candidates by measured speed-up when they differ by more than "
            "speedup_margin (False: the paper's ties)."
        },
    )
    tuning_min_reward: float | None = field(
        default=None,
        metadata={
            "help": "No tuning term for a prompt whose best reward is below this; None: reward_r3 with the "
            "unit-test reward (imitate only passing programs), else no threshold."
        },
    )
    rank_on_differing_tokens: bool = field(
        default=False,
        metadata={
            "help": "Rank each pair only on the tokens after its longest common prefix (anti-degeneration)."
        },
    )

    # Evaluation
    eval_num_beams: int = field(default=4, metadata={"help": "Beams for evaluation-time generation."})
    eval_num_return_sequences: int = field(
        default=2, metadata={"help": "Programs kept per prompt at evaluation, at most eval_num_beams."}
    )

    def __post_init__(self):
        self._validate_rrhf()
        if self.generation_batch_size is None:
            self.generation_batch_size = self.per_device_train_batch_size
        # TrainingArguments parses the JSON strings of the fields listed in _VALID_DICT_FIELDS.
        super().__post_init__()
        for name in ("generation_kwargs", "execution_kwargs"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), dict):
                raise ValueError(
                    f"RRHFConfig.{name} must be a dict or a JSON object string, got {getattr(self, name)!r}."
                )

    def _validate_rrhf(self) -> None:
        def fail(name: str, requirement: str) -> None:
            raise ValueError(f"RRHFConfig.{name} must be {requirement}, got {getattr(self, name)!r}.")

        for name in (
            "num_random_samples",
            "num_greedy_samples",
            "no_repeat_ngram_size",
            "top_k",
            "rewrite_candidates",
            "dynamic_sampling_batches",
        ):
            if getattr(self, name) < 0:
                fail(name, ">= 0")
        if self.num_greedy_samples > 1:
            fail("num_greedy_samples", "0 or 1 (greedy decoding is deterministic)")
        if self.num_candidates_per_prompt == 0:
            raise ValueError(
                "RRHFConfig has no candidates: num_random_samples and num_greedy_samples are 0 and include_target is "
                "False."
            )
        if self.num_candidates_per_prompt == 1:
            warnings.warn(
                "RRHFConfig gives a single candidate per prompt: the ranking loss is always 0.",
                UserWarning,
                stacklevel=3,
            )
        if self.execution_cost not in COST_MODES:
            fail("execution_cost", f"one of {COST_MODES}")
        for name in ("temperature", "repetition_penalty", "execution_timeout_s"):
            if getattr(self, name) <= 0:
                fail(name, "> 0")
        if not 0 < self.top_p <= 1:
            fail("top_p", "in (0, 1]")
        for name in ("max_prompt_length", "generation_batch_size", "execution_workers", "cpu_threads"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                fail(name, "a positive integer or None")
        for name in (
            "max_completion_length",
            "execution_n_trials",
            "eval_num_beams",
            "eval_num_return_sequences",
        ):
            if getattr(self, name) <= 0:
                fail(name, "a positive integer")
        if self.eval_num_return_sequences > self.eval_num_beams:
            raise ValueError(
                f"RRHFConfig.eval_num_return_sequences ({self.eval_num_return_sequences}) must be <= eval_num_beams "
                f"({self.eval_num_beams})."
            )
        validate_tier_rewards(self.reward_tier_values, where="RRHFConfig reward tiers reward_r1..reward_r4")
        if self.speedup_margin < 1.0:
            fail("speedup_margin", ">= 1.0")
        for name in ("rank_loss_weight", "length_penalty", "rank_margin"):
            if getattr(self, name) < 0:
                fail(name, ">= 0")
        if isinstance(self.tie_priority, str):
            self.tie_priority = [p for p in self.tie_priority.replace(",", " ").split() if p]
        known = [s.name.lower() for s in SourceKind]
        names = [str(p).strip().lower() for p in self.tie_priority]
        unknown = [p for p in names if p not in known]
        if unknown or len(set(names)) != len(names):
            fail("tie_priority", f"distinct names among {known}")
        self.tie_priority = names
        if self.reward_weights is not None and len(self.reward_weights) == 0:
            fail("reward_weights", "a non-empty list or None")

    @property
    def reward_tier_values(self) -> tuple[float, float, float, float]:
        """Rewards of tiers R1..R4, for `perfrl_trl.rewards.UnitTestRewardFunction`."""
        return (self.reward_r1, self.reward_r2, self.reward_r3, self.reward_r4)

    def loss_options(self, unit_test_rewards_only: bool = True) -> RRHFLossOptions:
        """The loss fields as `perfrl_trl.loss.RRHFLossOptions`, for `rrhf_loss`.

        Args:
            unit_test_rewards_only: whether every reward is a `UnitTestRewardFunction`, so that rewards are
                on the tier scale and `tuning_min_reward=None` means `reward_r3`.
        """
        threshold = self.tuning_min_reward
        if threshold is None and unit_test_rewards_only:
            threshold = self.reward_r3
        return RRHFLossOptions(
            rank_weight=self.rank_loss_weight,
            length_normalize=self.length_normalize,
            length_penalty=self.length_penalty,
            priority=self.tie_priority,
            rank_margin=self.rank_margin,
            rank_on_differing_tokens=self.rank_on_differing_tokens,
            speedup_margin=self.speedup_margin if self.rank_by_speedup else None,
            tuning_min_reward=threshold,
        )

    @property
    def num_candidates_per_prompt(self) -> int:
        """Random samples + greedy decodes + the target."""
        return self.num_random_samples + self.num_greedy_samples + int(self.include_target)

    def execution_config_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `perfrl_trl.execution.ExecutionConfig`."""
        kwargs: dict[str, Any] = {
            "timeout_s": self.execution_timeout_s,
            "n_trials": self.execution_n_trials,
            "workers": self.execution_workers,
            "margin": self.speedup_margin,
        }
        if self.execution_cost != "cpu_time":
            kwargs["cost"] = self.execution_cost
        if self.ray_address is not None:
            kwargs["ray_address"] = self.ray_address
        kwargs.update(self.execution_kwargs or {})
        return kwargs
