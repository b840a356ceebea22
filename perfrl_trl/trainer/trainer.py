"""``RRHFTrainer``: PerfRL's RL step, read as the paper's Figure 1: generate, score, rank, update."""

from __future__ import annotations

import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer

from ..collator import RRHFCandidateCollator
from ..data.rewrite_pairs import candidate_rewrites
from ..execution import ExecutionConfig
from ..execution.cores import torch_threads
from ..execution.tiers import Tier
from ..generation import (
    base_generation_config,
    beam_programs,
    gather_in_order,
    generate_completions,
    process_share,
    sampling_config,
    tokenize_prompts,
)
from ..loss import (
    SourceKind,
    count_normalisers,
    groups_with_loss_terms,
    rrhf_loss_from_token_logps,
    shift_labels,
    token_log_probs,
)
from ..metrics.arithmetic import SampleResult, aggregate, best_of_k
from ..metrics.scoring import score_programs
from ..models import load_model_and_tokenizer, prepare_tokenizer
from ..rewards import UnitTestRewardFunction
from .config import RRHFConfig
from .forward import candidate_token_logps
from .model_card import write_model_card
from .scoring import CandidateScorer
from .sft import count_unfit_targets

logger = logging.getLogger(__name__)


class GeneratedCandidate(NamedTuple):
    """One candidate of a prompt, as the trainer keeps it between generating and collating.

    ``index`` is its position in the scorer's submission order: where its reward and verdict are.
    """

    ids: list[int]
    text: str
    source: SourceKind
    truncated: bool
    index: int


def _r4_speedup(verdict) -> float | None:
    """The speed-up speed-aware ranking compares: only an R4 verdict's, the one the timing rule vouched for."""
    return verdict.speedup if verdict is not None and verdict.tier == Tier.R4 else None


def beats_verdict(candidate, target, margin: float) -> bool | None:
    """Whether a candidate's verdict beats its row's target's, by the evaluation's rule
    (`SampleResult.beats`): both pass and the candidate ran faster by ``margin``. ``None`` when the target is
    missing, failed or was not timed."""
    if target is None:
        return None
    # A candidate whose scoring failed counts as a failure, as in the tiers logged beside it.
    failed = SampleResult(compiled=None, passed=False)
    mine = failed if candidate is None else SampleResult.from_verdict(candidate, margin=margin)
    return mine.beats(SampleResult.from_verdict(target, margin=margin), margin)


def is_degenerate(text: str, truncated: bool, repeats: int = 4) -> bool:
    """A program that hit the token limit, or ends by repeating one line ``repeats`` times."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return truncated or (len(lines) >= repeats and len(set(lines[-repeats:])) == 1)


class RRHFTrainer(Trainer):
    """Trains a code model with RRHF on candidates ranked by running them against unit tests.

    Each step follows PerfRL's Figure 1: **generate** random samples and greedy decodes with the current
    policy (plus the dataset's target), **score** every candidate in the sandbox, **rank** them with the
    RRHF loss, and **update**. Works with seq2seq (T5/CodeT5) and decoder-only models.

    Args:
        model: A model id/folder or a ``PreTrainedModel``.
        args: An :class:`RRHFConfig`.
        train_dataset: Rows with ``prompt``, ``target_code`` (when ``include_target``) and the reward's
            columns (``tests`` and ``input_code`` for the default unit-test reward). A row whose ``target_code``
            is ``None`` is a tests-only row: its candidates are the generated ones alone, ranked by their tests
            and timings. Tests-only and labelled rows mix freely.
        eval_dataset: The same shape, used for beam-search evaluation (%OPT, SP, RTR, rates).
        processing_class: The tokenizer; by default loaded from the model's folder.
        reward_funcs: One TRL-style reward callable or a list; defaults to :class:`UnitTestRewardFunction`
            with the config's tier values. Weights come from ``args.reward_weights``.
        peft_config: A ``peft`` config to train adapters instead of the full model.

    Example:
        ```python
        from perfrl_trl import RRHFConfig, RRHFTrainer
        from perfrl_trl.data import build_benchmark

        data = build_benchmark(n_per_family=4)
        trainer = RRHFTrainer("path/to/sft-model", args=RRHFConfig("out"), train_dataset=data["train"])
        trainer.train()
        ```
    """

    _tag_names: tuple[str, ...] = ("trl", "rrhf", "perfrl", "code-optimization")

    def __init__(
        self,
        model: str | PreTrainedModel,
        args: RRHFConfig | None = None,
        train_dataset: Dataset | None = None,
        eval_dataset: Dataset | None = None,
        processing_class: PreTrainedTokenizerBase | None = None,
        reward_funcs: Callable | Sequence[Callable] | None = None,
        peft_config: Any | None = None,
        callbacks: list | None = None,
        optimizers: tuple = (None, None),
    ):
        args = args or RRHFConfig(output_dir="rrhf-output")
        if isinstance(model, (str, os.PathLike)):
            model, tokenizer = load_model_and_tokenizer(model)
            processing_class = processing_class or tokenizer
        if processing_class is None:
            from ..models import load_tokenizer

            processing_class = load_tokenizer(model.name_or_path)
        self.is_encoder_decoder = bool(model.config.is_encoder_decoder)
        prepare_tokenizer(processing_class, self.is_encoder_decoder)
        if peft_config is not None:
            from peft import get_peft_model

            model = get_peft_model(model, peft_config)

        if reward_funcs is None:
            reward_funcs = [self._default_reward(args)]
        elif callable(reward_funcs):
            reward_funcs = [reward_funcs]
        weights = args.reward_weights or [1.0] * len(reward_funcs)
        self.scorer = CandidateScorer(reward_funcs, weights, failure_value=args.reward_r2)
        self.loss_options = args.loss_options(
            unit_test_rewards_only=all(isinstance(f, UnitTestRewardFunction) for f in reward_funcs)
        )
        for name, data in (("train_dataset", train_dataset), ("eval_dataset", eval_dataset)):
            self._check_columns(name, data, args)
        if args.include_target and train_dataset is not None and hasattr(train_dataset, "column_names"):
            count_unfit_targets(train_dataset, processing_class, args.max_completion_length)

        self.candidate_collator = RRHFCandidateCollator.from_tokenizer(
            processing_class,
            is_encoder_decoder=self.is_encoder_decoder,
            max_prompt_length=args.max_prompt_length,
            max_completion_length=args.max_completion_length,
        )
        super().__init__(
            model=model,
            args=args,
            data_collator=_keep_rows,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            callbacks=callbacks,
            optimizers=optimizers,
        )
        if self.args.device.type == "cpu":
            # The sandbox judges candidates on the same cores while the model generates and trains.
            torch.set_num_threads(torch_threads(sandbox_alongside=True, requested=args.cpu_threads))
        # The loss is normalised over the whole accumulated batch (see get_batch_samples).
        self.loss_is_scaled_for_ga = True
        # The next step's candidates when generate_ahead is on: (epoch iterator, generated micro-batches).
        self._ahead: tuple[Any, list[dict[str, Any]]] | None = None
        # Dynamic sampling's judged groups with a loss term that the last step had no room for: the next step's
        # first.
        self._carry: list[dict[str, Any]] = []
        # On a mid-epoch resume, the checkpoint whose RNG state get_batch_samples restores before sampling,
        # and once restored, the one transformers' own later restore must skip (see _load_rng_state).
        self._rng_resume: str | None = None
        self._rng_restored: str | None = None
        self._metrics: dict[str, dict[str, list[float]]] = {
            "train": defaultdict(list),
            "eval": defaultdict(list),
        }
        self.candidate_log: list[dict[str, float]] = []
        if hasattr(self.model, "add_model_tags"):
            self.model.add_model_tags(list(self._tag_names))
        base = base_generation_config(self.model, processing_class, args)
        self.sample_config = sampling_config(
            base, do_sample=True, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p
        )
        self.greedy_config = sampling_config(base, do_sample=False)

    @staticmethod
    def _default_reward(args: RRHFConfig) -> UnitTestRewardFunction:
        """The unit-test reward with the config's tier values and execution settings."""
        execution = ExecutionConfig(**args.execution_config_kwargs())
        return UnitTestRewardFunction(values=args.reward_tier_values, execution_config=execution)

    def _check_columns(self, name: str, data: Dataset | None, args: RRHFConfig) -> None:
        if data is None or not hasattr(data, "column_names"):
            return
        needed = {"prompt"} | ({"target_code"} if args.include_target else set())
        needed |= {"input_code"} if args.rewrite_candidates else set()
        reward = self.scorer.unit_test_reward
        if reward is not None:
            needed |= {reward.tests_column, reward.baseline_column}
        missing = sorted(needed - set(data.column_names))
        if missing:
            raise ValueError(f"{name} is missing the column(s) {missing}; it has {data.column_names}")

    # -- step 1 and 2: generate and score ------------------------------------------------------------
    def _generate_and_score(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        return self._score_and_collate(self._generate(rows))

    def _generate(self, rows: list[dict]) -> dict[str, Any]:
        """Generate the candidates of ``rows``, submitting each to the sandbox as soon as it exists."""
        args, tok = self.args, self.processing_class
        model = self.accelerator.unwrap_model(self.model)
        columns = {k: [row[k] for row in rows] for k in rows[0]}
        prompts = columns["prompt"]
        candidates: list[list[GeneratedCandidate]] = [[] for _ in rows]
        pending = self.scorer.start()

        def add(index: int, ids: list[int], text: str, source: SourceKind, truncated: bool) -> None:
            candidates[index].append(
                GeneratedCandidate(ids, text, source, truncated, len(pending.completions))
            )
            self.scorer.add(pending, [prompts[index]], [text], [index], columns)

        # The targets' sandbox runs start first (and are cached after the first epoch). A tests-only row
        # (target None) has none.
        if args.include_target:
            for i, code in enumerate(columns["target_code"]):
                if code is not None:
                    add(i, tok(code, add_special_tokens=False)["input_ids"], code, SourceKind.TARGET, False)
        if args.rewrite_candidates:
            for i, code in enumerate(columns["input_code"]):
                for program, ids in self._rewrites(code):
                    add(i, ids, program, SourceKind.REWRITE, False)
        started = time.perf_counter()
        chunk = args.generation_batch_size
        for start in range(0, len(rows), chunk):
            inputs = tokenize_prompts(
                tok, prompts[start : start + chunk], args.max_prompt_length, self.accelerator.device
            )
            for config, k, source in (
                (self.greedy_config, args.num_greedy_samples, SourceKind.GREEDY),
                (self.sample_config, args.num_random_samples, SourceKind.RANDOM),
            ):
                for offset, group in enumerate(generate_completions(model, tok, inputs, config, k)):
                    for c in group:
                        add(start + offset, c.ids, c.text, source, c.truncated)
        self._metrics["train"]["timing/generate_s"].append(time.perf_counter() - started)
        for i, group in enumerate(candidates):
            if not group:
                raise ValueError(
                    f"train row {prompts[i][:60]!r}... has no target_code and the config generates no candidate "
                    "(num_random_samples and num_greedy_samples are 0): a tests-only row needs samples"
                )
        return {"rows": rows, "columns": columns, "candidates": candidates, "pending": pending}

    def _rewrites(self, code: str) -> list[tuple[str, list[int]]]:
        """Up to ``rewrite_candidates`` distinct generic rewrites of ``code`` with their token ids, the composition
        first, each short enough to be trained on whole (a cut program would teach the model not to stop)."""
        found = [p for p in candidate_rewrites(code).values() if p is not None]
        limit, kept = self.args.max_completion_length, []
        for program in dict.fromkeys(reversed(found)):
            ids = self.processing_class(program, add_special_tokens=False)["input_ids"]
            if limit is None or len(ids) < limit:  # room for the EOS
                kept.append((program, ids))
            if len(kept) == self.args.rewrite_candidates:
                break
        return kept

    def _score_and_collate(self, generated: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Wait for the candidates' rewards and collate them for the loss."""
        return self._score(generated)[1]

    def _score(self, generated: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, torch.Tensor]]:
        """Wait for the candidates' rewards; returns each row's example for the collator, and their batch."""
        args, tok = self.args, self.processing_class
        columns, candidates = generated["columns"], generated["candidates"]
        prompts = columns["prompt"]
        waiting = time.perf_counter()
        rewards, verdicts = self.scorer.finish(generated["pending"], columns)
        # Sandbox work overlaps generation; what is left to wait for after it is the cost scoring adds.
        self._metrics["train"]["timing/score_wait_s"].append(time.perf_counter() - waiting)
        # Tiers and speed-ups are those of the first unit-test reward (scorer.unit_test_reward).
        verdicts = next((v for v in verdicts if v is not None), None)

        examples = []
        for i, group in enumerate(candidates):
            prompt_ids = tok(
                prompts[i], truncation=args.max_prompt_length is not None, max_length=args.max_prompt_length
            )["input_ids"]
            examples.append(
                {
                    "prompt_ids": prompt_ids,
                    "candidates": [
                        {
                            "completion_ids": c.ids,
                            "reward": rewards[c.index],
                            "source": c.source,
                            "truncated": c.truncated,
                            "speedup": _r4_speedup(verdicts[c.index] if verdicts is not None else None),
                        }
                        for c in group
                    ],
                }
            )
        batch = self.candidate_collator(examples)
        self._log_candidates(candidates, rewards, verdicts, batch)
        return examples, batch

    def _log_candidates(
        self,
        candidates: list[list[GeneratedCandidate]],
        rewards: list[float],
        verdicts: list | None,
        batch: dict[str, torch.Tensor],
    ) -> None:
        """The paper's Fig. 2 (right): compile, pass and optimisation rates of the generated candidates; the
        share of them that beat their row's target; and the share of prompts whose candidates all tie.

        ``verdicts`` are the unit-test reward's, by submission order (``None`` without one); a candidate whose
        scoring failed counts as R2, the tier of the reward it was given.
        """
        stats = torch.zeros(10, dtype=torch.float64)
        for group in candidates:
            target = next((c for c in group if c.source == SourceKind.TARGET), None)
            target_verdict = verdicts[target.index] if target is not None and verdicts is not None else None
            for c in group:
                if c.source in (SourceKind.TARGET, SourceKind.REWRITE):  # not the model's
                    continue
                verdict = verdicts[c.index] if verdicts is not None else None
                tier = verdict.tier if verdict is not None else Tier.R2
                beats = beats_verdict(verdict, target_verdict, self.args.speedup_margin)
                stats[:8] += torch.tensor(
                    [
                        1,
                        tier.compiles,
                        tier.passes,
                        tier == Tier.R4,
                        c.truncated,
                        is_degenerate(c.text, c.truncated),
                        beats is not None,
                        bool(beats),
                    ],
                    dtype=torch.float64,
                )
        _, with_signal = count_normalisers(**self._plan_inputs(batch))
        stats[8:] = torch.tensor([len(candidates), len(candidates) - with_signal], dtype=torch.float64)
        stats = self.accelerator.reduce(stats.to(self.accelerator.device), reduction="sum").cpu()
        reward_t = self.accelerator.gather(torch.tensor(rewards, device=self.accelerator.device)).float()
        m = self._metrics["train"]
        m["reward"].append(reward_t.mean().item())
        m["reward_std"].append(reward_t.std().item() if reward_t.numel() > 1 else 0.0)
        n = max(stats[0].item(), 1.0)
        # The update these candidates feed (with generate_ahead they were generated one update earlier).
        rates = {"epoch": self.state.epoch or 0.0, "step": self.state.global_step + 1}
        names = ("compile_rate", "pass_rate", "opt_rate", "truncation_rate", "degenerate_rate")
        if self.scorer.unit_test_reward is None:
            # Tiers come from the sandbox's verdicts; custom rewards alone give none to count.
            names = (None, None, None, "truncation_rate", "degenerate_rate")
        for k, name in enumerate(names, 1):
            if name is None:
                continue
            rates[name] = stats[k].item() / n
            m[f"candidates/{name}"].append(rates[name])
        # Only candidates of rows with a passing target count; None when the step had none (tests-only rows).
        rates["beats_target_rate"] = stats[7].item() / stats[6].item() if stats[6] > 0 else None
        rates["groups_without_signal"] = stats[9].item() / max(stats[8].item(), 1.0)
        if rates["beats_target_rate"] is not None:
            m["candidates/beats_target_rate"].append(rates["beats_target_rate"])
        m["groups_without_signal"].append(rates["groups_without_signal"])
        # Every step's rates, whatever logging_steps is: the per-RL-step curves are built from it.
        self.candidate_log.append(rates)

    def _init_training_state(
        self, max_steps, num_update_steps_per_epoch, num_train_epochs, resume_from_checkpoint, trial
    ):
        epochs, steps_in_epoch = super()._init_training_state(
            max_steps, num_update_steps_per_epoch, num_train_epochs, resume_from_checkpoint, trial
        )
        # On a mid-epoch resume transformers restores the checkpoint's RNG state only once the first batches
        # are fetched, after get_batch_samples returns; this trainer samples candidates inside it, so it
        # restores the state itself, between fetching and sampling (see get_batch_samples, _load_rng_state).
        self._rng_resume = resume_from_checkpoint if steps_in_epoch > 0 else None
        self._rng_restored = None
        return epochs, steps_in_epoch

    def _load_rng_state(self, checkpoint) -> None:
        if checkpoint is not None and checkpoint == self._rng_restored:
            self._rng_restored = None  # restored before sampling; loading it again would replay the samples
            return
        super()._load_rng_state(checkpoint)

    def get_batch_samples(self, epoch_iterator, num_batches: int, device: torch.device):
        """Generate and score every micro-batch of the accumulation step up front, so the tuning loss is
        normalised by the best-candidate tokens of the whole step (exact under gradient accumulation)."""
        before = self._executor_stats()
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] is epoch_iterator:
            generated = ahead[1]  # generated during the previous step, judged while it trained
        else:
            self._cancel(ahead)
            raw, _ = super().get_batch_samples(epoch_iterator, num_batches, device)
            if self._rng_resume is not None:
                checkpoint, self._rng_resume = self._rng_resume, None
                self._load_rng_state(checkpoint)
                self._rng_restored = checkpoint
            # Every micro-batch is generated before any is waited for, so the sandbox times the first
            # micro-batch's candidates while the next ones are generated.
            generated = [self._generate(rows) for rows in raw]
        if self.args.generate_ahead and self.state.global_step + 1 < self.state.max_steps:
            # The next step's candidates, from the weights before this step's update: the sandbox judges
            # them on the free cores during this step's forward/backward. Nothing is left at the end of an
            # epoch's iterator, so epochs (and the data order) are unchanged.
            upcoming, _ = super().get_batch_samples(epoch_iterator, num_batches, device)
            if upcoming:
                self._ahead = (epoch_iterator, [self._generate(rows) for rows in upcoming])
        scored = [self._score(g) for g in generated]
        if self.args.dynamic_sampling_batches > 0 and scored:
            batches = self._replace_empty_groups(scored, epoch_iterator, device)
        else:
            batches = [batch for _, batch in scored]
        self._log_cache_stats(before, self._executor_stats())
        if not batches:  # the epoch's prompts ran out (dynamic sampling drew the last ones)
            return [], None
        num_best_tokens, num_groups = self._step_normalisers(batches, device)
        for b in batches:
            b["num_groups_in_batch"] = num_groups
        return batches, num_best_tokens

    def _replace_empty_groups(
        self, scored: list[tuple[list[dict], dict[str, torch.Tensor]]], epoch_iterator, device: torch.device
    ) -> list[dict[str, torch.Tensor]]:
        """Dynamic sampling: the step's groups that give the loss nothing (no ranked pair and nothing to imitate:
        with unit-test rewards, candidates that all fail) give way to groups of the epoch's next prompts, drawn a
        micro-batch at a time (at most ``dynamic_sampling_batches``), generated by the same weights and judged;
        the step keeps its micro-batches' sizes, topped up with empty groups when short.

        Groups with a term beyond the step's need are not thrown away (as DAPO's are) but train first in the
        next step, one update behind the policy as with ``generate_ahead``: every judged group with a term is
        trained on, so what dynamic sampling costs is the generating and judging of the empty groups alone."""
        sizes = [len(examples) for examples, _ in scored]
        kept, self._carry = self._carry, []
        empty: list[dict] = []

        def sort(examples: list[dict], batch: dict[str, torch.Tensor]) -> None:
            useful = groups_with_loss_terms(**self._plan_inputs(batch))
            assert useful.numel() == len(examples)  # the collator numbers groups by example
            for example, has_term in zip(examples, useful.tolist()):
                (kept if has_term else empty).append(example)

        for examples, batch in scored:
            sort(examples, batch)
        drawn = 0
        while drawn < self.args.dynamic_sampling_batches:
            # Every process draws as long as any is short, so that their collective calls stay in step.
            short = torch.tensor([float(len(kept) < sum(sizes))], device=self.accelerator.device)
            if self.accelerator.reduce(short, reduction="sum").item() == 0:
                break
            more, _ = super().get_batch_samples(epoch_iterator, 1, device)
            ran_out = torch.tensor([float(not more)], device=self.accelerator.device)
            if self.accelerator.reduce(ran_out, reduction="sum").item() > 0:
                break
            drawn += 1
            sort(*self._score(self._generate(more[0])))
        chosen = (kept + empty)[: sum(sizes)]
        self._carry = kept[sum(sizes) :]
        m = self._metrics["train"]
        m["dynamic_sampling/extra_batches"].append(float(drawn))
        m["dynamic_sampling/empty_groups_trained"].append(max(sum(sizes) - len(kept), 0) / sum(sizes))
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        return [self.candidate_collator(chosen[a : a + n]) for a, n in zip(starts, sizes)]

    def _step_normalisers(self, batches: list[dict[str, torch.Tensor]], device: torch.device):
        """The loss's normalisers for the whole accumulation step, over every process: the tokens of the best
        candidates the tuning term imitates (``num_items_in_batch``) and the prompts with a ranked pair (the rank
        loss's groups)."""
        counts = torch.tensor(
            [count_normalisers(**self._plan_inputs(b)) for b in batches],
            dtype=torch.long,
            device=device,
        ).sum(0)
        if self.args.world_size > 1:
            counts = self.accelerator.reduce(counts, reduction="sum")
        return counts[0], counts[1]

    def _cancel(self, ahead) -> None:
        """Drop candidates generated ahead for a step that will not run (training stopped early)."""
        if ahead is None:
            return
        for generated in ahead[1]:
            for futures in generated["pending"].futures.values():
                for fut in futures:
                    fut.cancel()  # queued sandbox work is dropped; a run already started finishes

    def train(self, *args, **kwargs):
        try:
            return super().train(*args, **kwargs)
        finally:
            self._cancel(self._ahead)
            self._ahead = None
            self._carry = []

    def _executor_stats(self) -> dict[str, int] | None:
        reward = self.scorer.unit_test_reward
        return dict(reward.executor.stats) if reward is not None else None

    def _log_cache_stats(self, before: dict[str, int] | None, after: dict[str, int] | None) -> None:
        """Per step: the share of sandbox requests served by an identical earlier one, and the baselines
        timed (after the first pass over the data, 0: each is timed once per problem for the whole run)."""
        if before is None or after is None:
            return
        keys = ("requests", "cache_hits", "baselines_timed", "timed_runs")
        delta = torch.tensor([after.get(k, 0) - before.get(k, 0) for k in keys], dtype=torch.float64)
        delta = self.accelerator.reduce(delta.to(self.accelerator.device), reduction="sum").cpu()
        m = self._metrics["train"]
        m["reward/cache_hit_rate"].append(delta[1].item() / max(delta[0].item(), 1.0))
        m["reward/baselines_timed"].append(delta[2].item())
        m["reward/timed_runs"].append(delta[3].item())

    def training_step(self, model, inputs, num_items_in_batch=None):
        started = time.perf_counter()
        loss = super().training_step(model, inputs, num_items_in_batch)
        self._metrics["train"]["timing/forward_backward_s"].append(time.perf_counter() - started)
        return loss

    def _loss_labels(self, labels: torch.Tensor) -> torch.Tensor:
        return labels if self.is_encoder_decoder else shift_labels(labels)

    def _plan_inputs(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        """What the loss's planning helpers (`count_normalisers`, `groups_with_loss_terms`) read of a collated
        batch, with this trainer's loss options."""
        return {
            "labels": self._loss_labels(batch["labels"]),
            "rewards": batch["rewards"],
            "sources": batch["sources"],
            "group_ids": batch["group_ids"],
            "options": self.loss_options,
            "speedups": batch["speedups"],
        }

    def _prepare_inputs(self, inputs):
        if isinstance(inputs, list):  # rows straight from the dataloader (e.g. prediction_step)
            inputs = self._generate_and_score(inputs)
        return super()._prepare_inputs(inputs)

    # -- step 3 and 4: rank and update ----------------------------------------------------------------
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """``L = a·L_rank + L_tuning`` over all candidates of the batch (their log-probabilities from
        `candidate_token_logps`: each prompt encoded once, rows in chunks of similar length)."""
        rewards, sources, group_ids = inputs.pop("rewards"), inputs.pop("sources"), inputs.pop("group_ids")
        speedups = inputs.pop("speedups", None)
        num_groups = inputs.pop("num_groups_in_batch", None)
        labels = inputs.pop("labels")
        if return_outputs:  # the caller wants the logits: one padded pass
            if self.is_encoder_decoder:
                decoder_input_ids = self.accelerator.unwrap_model(
                    model
                ).prepare_decoder_input_ids_from_labels(labels=labels)
                outputs = model(**inputs, decoder_input_ids=decoder_input_ids)
            else:
                outputs = model(**inputs)
            token_logps, _ = token_log_probs(outputs.logits, self._loss_labels(labels))
        else:
            outputs = None
            token_logps = candidate_token_logps(
                model,
                inputs,
                labels,
                group_ids,
                is_encoder_decoder=self.is_encoder_decoder,
                single_pass=model is not self.accelerator.unwrap_model(model),
            )
        args = self.args
        out = rrhf_loss_from_token_logps(
            token_logps,
            self._loss_labels(labels),
            rewards,
            sources,
            group_ids,
            options=self.loss_options,
            speedups=speedups,
            num_items_in_batch=num_items_in_batch,
            num_groups_in_batch=num_groups,
        )
        loss = out.loss
        if args.world_size > 1 and num_items_in_batch is not None:
            # Normalised by global counts, while DDP averages gradients over ranks: undo the average.
            loss = loss * self.accelerator.num_processes
        mode = "train" if model.training else "eval"
        self._metrics[mode]["rank_loss"].append(self.accelerator.gather(out.rank_loss.detach()).mean().item())
        self._metrics[mode]["tuning_loss"].append(
            self.accelerator.gather(out.tuning_loss.detach()).mean().item()
        )
        pairs = torch.stack([out.num_correct_pairs, out.num_pairs]).float().to(self.accelerator.device)
        pairs = self.accelerator.reduce(pairs, reduction="sum")
        if pairs[1] > 0:
            self._metrics[mode]["rank_accuracy"].append((pairs[0] / pairs[1]).item())
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "train" if self.model.training else "eval"
        metrics = {k: sum(v) / len(v) for k, v in self._metrics[mode].items() if v}
        if mode == "eval":
            metrics = {f"eval_{k}": v for k, v in metrics.items()}
        super().log({**logs, **metrics}, start_time)
        self._metrics[mode].clear()

    # -- evaluation: beam search, best of the returned beams, scored in the sandbox -------------------
    def evaluate(
        self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"
    ) -> dict[str, float]:
        """Beam search (``eval_num_beams``), keep ``eval_num_return_sequences`` programs per prompt, score
        the best of them: %OPT, SP, RTR, compile and pass rates (shared with ``perfrl/speedup``)."""
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if dataset is None:
            raise ValueError("RRHFTrainer.evaluate needs an eval_dataset")
        was_training = self.model.training
        self.model.eval()  # so that log() files these metrics under eval, not the running train ones
        predictions, truncated = self.generate_programs(dataset)
        reward = self.scorer.unit_test_reward or self._default_reward(self.args)
        # Each process judges its share of the problems; the outcomes are gathered back in dataset order.
        mine = process_share(len(dataset))
        # With targets, each problem's target is judged alongside (cached after the first evaluation), so the
        # held-out share of problems where the model beat its data is known at every evaluation.
        targets = dataset["target_code"] if "target_code" in dataset.column_names else None
        has_target = [i for i in mine if targets is not None and targets[i] is not None]
        results = score_programs(
            [predictions[i] for i in mine] + [[targets[i]] for i in has_target],
            [dataset[i][reward.baseline_column] for i in [*mine, *has_target]],
            [dataset[i][reward.tests_column] for i in [*mine, *has_target]],
            margin=self.args.speedup_margin,
            executor=reward.executor,
        )
        margin = self.args.speedup_margin
        target_best = dict(zip(has_target, (best_of_k(r, margin) for r in results[len(mine) :])))
        beats = [
            best_of_k(results[k], margin).beats(target_best[i], margin) if i in target_best else None
            for k, i in enumerate(mine)
        ]
        results = gather_in_order(mine, results[: len(mine)], len(dataset))
        beats = [b for b in gather_in_order(mine, beats, len(dataset)) if b is not None]
        # Per-problem outcomes in dataset order, for paired comparisons between models.
        self.last_eval_results = results
        summary = aggregate(results, margin=self.args.speedup_margin, n_bootstrap=0)
        metrics = {
            f"{metric_key_prefix}_{k}": float(v)
            for k, v in summary.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v is not None
        }
        metrics[f"{metric_key_prefix}_truncation_rate"] = sum(truncated) / max(len(truncated), 1)
        if beats:
            metrics[f"{metric_key_prefix}_beats_target_rate"] = sum(beats) / len(beats)
        self.log(metrics)
        self.model.train(was_training)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def generate_programs(self, dataset: Dataset) -> tuple[list[list[str]], list[bool]]:
        """Beam-searched programs per prompt of ``dataset``, in its order, and every program's truncation flag.

        Each process decodes its share with [`perfrl_trl.generation.beam_programs`] (the decoding of
        `evaluate_models` too); every process gets the whole dataset's.
        """
        mine = process_share(len(dataset))
        programs, truncated = beam_programs(
            self.accelerator.unwrap_model(self.model),
            self.processing_class,
            [dataset[i]["prompt"] for i in mine],
            self.args,
            device=self.accelerator.device,
        )
        n = len(dataset)
        truncated = gather_in_order(mine, truncated, n)
        return gather_in_order(mine, programs, n), [flag for flags in truncated for flag in flags]

    def create_model_card(
        self, model_name: str | None = None, dataset_name: str | None = None, tags=None, **kwargs
    ) -> None:
        """Write ``README.md`` in ``output_dir``: PerfRL and RRHF, citations, tags and the final metrics."""
        if not self.is_world_process_zero():
            return
        write_model_card(
            self.args,
            self.accelerator.unwrap_model(self.model).config,
            self.state.log_history,
            self.state.global_step,
            tags=[*self._tag_names, *(tags or [])],
            model_name=model_name,
            dataset_name=dataset_name,
        )


def _keep_rows(rows: list[dict]) -> list[dict]:
    """The dataloader hands rows through untouched: candidates are generated per step."""
    return rows
