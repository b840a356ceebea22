"""RRHFTrainer end to end at tiny sizes: real models, the real sandboxed reward, the real Trainer loop."""

from __future__ import annotations

import dataclasses
import logging
import os

import pytest
import torch
from datasets import Dataset

from perfrl_trl.models import create_pretrained, load_model_and_tokenizer
from perfrl_trl.rewards import UnitTestRewardFunction
from perfrl_trl.trainer import RRHFConfig, RRHFTrainer

SLOW = "n = int(input())\ns = 0\nfor i in range(n + 1):\n    s += i\nprint(s)\n"
FAST = "n = int(input())\nprint(n * (n + 1) // 2)\n"


def _rows(ns=(10, 2000, 300000, 50)):
    return [
        {
            "prompt": "Write faster version:\n" + SLOW + f"# case {n}\n",
            "input_code": SLOW,
            "target_code": FAST,
            "tests": [{"input": f"{n}\n", "output": f"{n * (n + 1) // 2}\n"}],
            "problem_id": f"p{n}",
        }
        for n in ns
    ]


@pytest.fixture(scope="module")
def dataset():
    return Dataset.from_list(_rows())


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    # No dropout, so that runs differing only in batching give the same numbers.
    return {
        "t5": create_pretrained("t5", "tiny", root / "t5", dropout_rate=0.0),
        "decoder": create_pretrained("decoder", "tiny", root / "decoder"),
    }


def _args(tmp_path, **kw):
    base = dict(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=2,
        max_completion_length=16,
        max_prompt_length=64,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        disable_tqdm=True,
        eval_num_beams=2,
        execution_n_trials=3,
        execution_timeout_s=2.0,
    )
    base.update(kw)
    return RRHFConfig(**base)


@pytest.mark.parametrize("arch", ["t5", "decoder"])
def test_one_step_changes_every_parameter_and_logs(arch, models, dataset, tmp_path):
    trainer = RRHFTrainer(
        models[arch], args=_args(tmp_path, max_steps=1, learning_rate=1e-2), train_dataset=dataset
    )
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    for name, param in trainer.model.named_parameters():
        if name in before and "embed_positions" not in name:
            assert not torch.equal(param, before[name]), f"{name} did not change"
    logged = trainer.state.log_history[0]
    for key in (
        "loss",
        "rank_loss",
        "tuning_loss",
        "reward",
        "candidates/compile_rate",
        "candidates/pass_rate",
        "candidates/opt_rate",
        "candidates/truncation_rate",
        "candidates/degenerate_rate",
    ):
        assert key in logged, key
    # Targets pass their tests (R3, or R4 where the loop is long enough to time) and are one candidate of each
    # prompt's group. The mean reward less the generated candidates' share (from their logged tier rates)
    # leaves the targets' mean, which must be above R2, the most a program failing its tests gets.
    args = trainer.args
    c, p, o = (logged[f"candidates/{k}_rate"] for k in ("compile", "pass", "opt"))
    generated = (
        args.reward_r1 * (1 - c) + args.reward_r2 * (c - p) + args.reward_r3 * (p - o) + args.reward_r4 * o
    )
    group = 1 + args.num_greedy_samples + args.num_random_samples
    targets = group * logged["reward"] - (group - 1) * generated
    assert targets >= args.reward_r3 - 1e-3 and args.reward_r3 > args.reward_r2, (targets, logged)


def test_evaluation_reports_the_paper_metrics(models, dataset, tmp_path):
    trainer = RRHFTrainer(
        models["t5"], args=_args(tmp_path, max_steps=1), train_dataset=dataset, eval_dataset=dataset
    )
    metrics = trainer.evaluate()
    for key in (
        "eval_percent_optimized",
        "eval_speedup",
        "eval_runtime_reduction",
        "eval_percent_compiled",
        "eval_percent_passed",
        "eval_truncation_rate",
    ):
        assert key in metrics, key
    assert metrics["eval_n_samples"] == len(dataset)


def _greedy_reward(trainer, dataset) -> float:
    programs, _ = trainer.generate_programs(dataset)
    reward = UnitTestRewardFunction(execution_config=trainer.scorer.unit_test_reward.config)
    scores = reward(None, [p[0] for p in programs], tests=dataset["tests"], input_code=dataset["input_code"])
    return sum(scores) / len(scores)


def _constant_rows(values=(42, 7)):
    """A toy task where the reward clearly prefers one short output: skip a busy loop, print the constant."""
    rows = []
    for k in values:
        slow = f"s = 0\nfor i in range(300000):\n    s += 1\nprint({k})\n"
        rows.append(
            {
                "prompt": "Write faster version:\n" + slow,
                "input_code": slow,
                "target_code": f"print({k})\n",
                "tests": [{"input": "", "output": f"{k}\n"}],
                "problem_id": f"const{k}",
            }
        )
    return rows


@pytest.mark.slow
def test_rrhf_raises_the_greedy_reward(models, tmp_path):
    """The learning test: a few dozen CPU steps must raise the mean reward of the greedy output."""
    data = Dataset.from_list(_constant_rows())
    args = _args(
        tmp_path,
        max_steps=30,
        learning_rate=3e-3,
        eval_num_beams=1,
        eval_num_return_sequences=1,
        warmup_steps=0,
        lr_scheduler_type="constant",
        seed=1,
    )
    trainer = RRHFTrainer(models["t5"], args=args, train_dataset=data)
    before = _greedy_reward(trainer, data)
    trainer.train()
    after = _greedy_reward(trainer, data)
    # Garbage (R1/R2) before; the verified faster program (R4 = 2.0) after.
    assert after >= before + 0.5, (before, after)
    programs, truncated = trainer.generate_programs(data)
    assert not any(truncated), programs  # the guard against degeneration holds


def test_gradient_accumulation_is_exact(models, dataset, tmp_path):
    """Two micro-batches of 2 accumulate to the same update as one batch of 4 (deterministic candidates)."""
    params = {}
    for bs, ga in ((4, 1), (2, 2)):
        args = _args(
            tmp_path / f"{bs}",
            max_steps=1,
            per_device_train_batch_size=bs,
            gradient_accumulation_steps=ga,
            num_random_samples=0,
            learning_rate=1e-2,
            optim="sgd",
            max_grad_norm=0.0,
            seed=3,
        )
        trainer = RRHFTrainer(models["t5"], args=args, train_dataset=dataset)
        trainer.train()
        params[ga] = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    for name, value in params[1].items():
        torch.testing.assert_close(params[2][name], value, rtol=1e-4, atol=1e-6, msg=name)


def test_a_raising_reward_costs_only_its_candidates(models, dataset, tmp_path, caplog):
    def flaky(prompts, completions, **columns):
        if any("print" in c for c in completions):
            raise RuntimeError("reward service down")
        return [0.5] * len(completions)

    flaky.__name__ = "flaky"
    args = _args(tmp_path, max_steps=1, reward_weights=None)
    trainer = RRHFTrainer(models["t5"], args=args, train_dataset=dataset, reward_funcs=[flaky])
    with caplog.at_level(logging.WARNING):
        trainer.train()
    assert any("reward flaky failed" in r.message for r in caplog.records)
    assert trainer.state.global_step == 1


def test_scorer_reads_each_verdict_once_and_keeps_every_unit_test_rewards(caplog):
    """Two unit-test rewards: both keep their verdicts; a failed sandbox future is logged once and gets R2."""
    from concurrent.futures import Future

    from perfrl_trl.execution import Tier, Verdict
    from perfrl_trl.trainer.scoring import CandidateScorer

    def done(value=None, error=None) -> Future:
        fut = Future()
        fut.set_exception(error) if error else fut.set_result(value)
        return fut

    passing = Verdict(compiled=True, passed=True, status="passed", n_tests=1, n_passed=1)
    failing = Verdict(compiled=True, passed=False, status="wrong_answer", n_tests=1)

    class Canned(UnitTestRewardFunction):
        def __init__(self, futures, **kw):
            super().__init__(**kw)
            self.futures = futures

        def submit(self, completions, tests, baselines=None):
            return [self.futures.pop(0) for _ in completions]

    first = Canned([done(passing), done(error=RuntimeError("worker lost"))])
    second = Canned([done(failing), done(passing)], values=(0.0, 0.5, 3.0, 4.0))
    scorer = CandidateScorer([first, second], [1.0, 1.0], failure_value=1.0)
    pending = scorer.start()
    columns = {"tests": [[{"input": "", "output": ""}]], "input_code": ["print()"]}
    scorer.add(pending, ["p", "p"], ["a", "b"], [0, 0], columns)
    with caplog.at_level(logging.WARNING):
        rewards, verdicts = scorer.finish(pending, columns)
    assert rewards == [1.3 + 0.5, 1.0 + 3.0]  # R3 + R2, failed (the R2 value) + R3
    assert verdicts == [[passing, None], [failing, passing]]
    assert [v.tier for v in verdicts[1]] == [Tier.R2, Tier.R3]
    failures = [r for r in caplog.records if "worker lost" in r.getMessage()]
    assert len(failures) == 1, [r.getMessage() for r in caplog.records]


def test_missing_column_is_a_clear_error(models, dataset, tmp_path):
    with pytest.raises(ValueError, match=r"missing the column\(s\) \['tests'\]"):
        RRHFTrainer(models["t5"], args=_args(tmp_path), train_dataset=dataset.remove_columns("tests"))


def _interrupted_and_uninterrupted(models, dataset, tmp_path, **kw):
    """Train 3 steps saving every step, then resume a fresh trainer from checkpoint-1 of that run."""
    # Steps 2 and 3 cross an epoch boundary (4 rows, batches of 2), so the data order is restored too.
    common = dict(max_steps=3, learning_rate=1e-2, seed=5, **kw)
    args = _args(tmp_path, save_strategy="steps", save_steps=1, **common)
    trainer = RRHFTrainer(models["t5"], args=args, train_dataset=dataset)
    trainer.train()
    uninterrupted = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    checkpoint = os.path.join(args.output_dir, "checkpoint-1")
    assert os.path.isfile(os.path.join(checkpoint, "model.safetensors"))
    # Same seed, on the CPU; the sandbox's verdicts for the same programs come from the shared executor's cache.
    resumed = RRHFTrainer(
        models["t5"], args=_args(tmp_path / "resumed", save_strategy="no", **common), train_dataset=dataset
    )
    resumed.train(resume_from_checkpoint=checkpoint)
    assert resumed.state.global_step == 3
    # Steps 2 and 3 did move the parameters, so that comparing the two runs is not vacuous.
    at_step_1 = load_model_and_tokenizer(checkpoint)[0]
    assert any(not torch.equal(p, uninterrupted[n]) for n, p in at_step_1.named_parameters())
    return checkpoint, uninterrupted, resumed


def test_checkpoint_resume_and_model_card(models, dataset, tmp_path):
    """A run resumed from step 1 of 3 ends with the parameters of the same run left uninterrupted."""
    # Greedy and target candidates only: the random samples' RNG is the subject of the test below.
    checkpoint, uninterrupted, resumed = _interrupted_and_uninterrupted(
        models, dataset, tmp_path, num_random_samples=0
    )
    for name, param in resumed.model.named_parameters():
        torch.testing.assert_close(param.detach(), uninterrupted[name], msg=name)

    resumed.create_model_card(dataset_name="perfrl/bench")
    with open(os.path.join(resumed.args.output_dir, "README.md")) as fh:
        card = fh.read()
    for needle in ("PerfRL", "RRHF", "2312.05657", "2304.05302", "- rrhf", "perfrl/bench"):
        assert needle in card, needle
    model, _ = load_model_and_tokenizer(checkpoint)
    assert model.config.is_encoder_decoder


def test_resume_restores_the_sampled_candidates(models, dataset, tmp_path):
    _, uninterrupted, resumed = _interrupted_and_uninterrupted(models, dataset, tmp_path)
    for name, param in resumed.model.named_parameters():
        torch.testing.assert_close(param.detach(), uninterrupted[name], msg=name)


def test_lora_trains_only_the_adapters(models, dataset, tmp_path):
    from peft import LoraConfig

    peft_config = LoraConfig(r=4, lora_alpha=8, target_modules=["q", "v"], task_type="SEQ_2_SEQ_LM")
    trainer = RRHFTrainer(
        models["t5"],
        args=_args(tmp_path, max_steps=1, learning_rate=1e-2),
        train_dataset=dataset,
        peft_config=peft_config,
    )
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    changed = {n for n, p in trainer.model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all("lora_" in n for n in changed), sorted(changed)[:5]


class _RecordingTrainer(RRHFTrainer):
    """Notes, for each generation, the step the trainer was at and the weights it generated with."""

    def _generate(self, rows):
        weights = sum(p.detach().double().sum().item() for p in self.model.parameters())
        self.generations = getattr(self, "generations", []) + [
            (self.state.global_step, weights, sorted(r["prompt"] for r in rows))
        ]
        return super()._generate(rows)


def test_generate_ahead_uses_the_weights_before_the_update(models, dataset, tmp_path):
    runs = {}
    for ahead in (False, True):
        # 4 rows in batches of 2: steps 1 and 2 are epoch 1, step 3 starts epoch 2.
        args = _args(
            tmp_path / str(ahead), max_steps=3, learning_rate=1e-2, seed=7, num_random_samples=0,
            generate_ahead=ahead,
        )  # fmt: skip
        runs[ahead] = trainer = _RecordingTrainer(models["t5"], args=args, train_dataset=dataset)
        trainer.train()
        assert trainer.state.global_step == 3
    on_policy, ahead = runs[False].generations, runs[True].generations
    assert [s for s, _, _ in on_policy] == [0, 1, 2]
    # Ahead, step 2's candidates come from the initial weights, generated before step 1's update; an
    # epoch's last step generates nothing ahead, and nothing is generated for a step after max_steps.
    assert [s for s, _, _ in ahead] == [0, 0, 2]
    assert ahead[1][1] == ahead[0][1] and on_policy[1][1] != on_policy[0][1]
    # The data order is unchanged: the same rows in the same steps.
    assert [p for _, _, p in ahead] == [p for _, _, p in on_policy]


def test_generate_ahead_drops_the_unused_step_when_training_stops(models, dataset, tmp_path):
    from transformers import TrainerCallback

    class StopAfterOne(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            control.should_training_stop = True

    args = _args(tmp_path, max_steps=2, num_random_samples=0, generate_ahead=True)
    trainer = _RecordingTrainer(models["t5"], args=args, train_dataset=dataset, callbacks=[StopAfterOne()])
    trainer.train()
    assert trainer.state.global_step == 1
    assert [s for s, _, _ in trainer.generations] == [0, 0]  # step 2 was generated ahead, then dropped
    assert trainer._ahead is None


# Three correct programs for one problem, far apart in speed, so that the real timing tells them apart even on a
# loaded machine: the slow input (a Python loop, ~0.3 s), a partly optimised target (the loop in C, several
# times faster) and a fully optimised rewrite (the formula, tens of times faster).
PARTIAL = "n = int(input())\nprint(sum(range(n + 1)))\n"
BIG = 3_000_000


def _judged_batch(trainer, texts_and_sources):
    """Candidates of one prompt judged by the trainer's own scorer and collated as for the loss."""
    from perfrl_trl.loss import SourceKind
    from perfrl_trl.trainer.trainer import GeneratedCandidate

    row = _rows((BIG,))[0] | {"target_code": PARTIAL}
    columns = {k: [v] for k, v in row.items()}
    pending = trainer.scorer.start()
    group = []
    for text, source in texts_and_sources:
        ids = trainer.processing_class(text, add_special_tokens=False)["input_ids"]
        group.append(GeneratedCandidate(ids, text, SourceKind[source], False, len(pending.completions)))
        trainer.scorer.add(pending, [row["prompt"]], [text], [0], columns)
    return trainer._score_and_collate(
        {"rows": [row], "columns": columns, "candidates": [group], "pending": pending}
    )


def test_speed_aware_ranking_with_real_timings(models, tmp_path):
    """The target (partly optimised) and a faster sample are both R4. With speed-aware ranking the sample
    outranks the target and is the tuning term's target, even with the target first in the tie priority; two
    copies of the sample (one verdict, from the cache) never outrank each other. Without it, target and sample
    tie."""
    from perfrl_trl.execution.tiers import Tier
    from perfrl_trl.loss import rrhf_loss

    args = _args(tmp_path, max_steps=1, tie_priority=["target", "greedy", "random"], execution_timeout_s=10.0)
    trainer = RRHFTrainer(models["t5"], args=args, train_dataset=Dataset.from_list(_rows((BIG,))))
    candidates = [(PARTIAL, "TARGET"), (FAST, "RANDOM"), (FAST, "RANDOM"), (SLOW, "GREEDY")]
    batch = _judged_batch(trainer, candidates)
    r4 = trainer.args.reward_r4
    assert batch["rewards"][:3].tolist() == [r4, r4, r4], batch
    speedups = batch["speedups"].tolist()
    assert speedups[1] == speedups[2] > trainer.args.speedup_margin * speedups[0], speedups
    assert batch["speedups"][3].isnan()  # the slow program itself: R3, never compared by speed

    labels = trainer._loss_labels(batch["labels"])
    logits = torch.zeros(*labels.shape, trainer.model.config.vocab_size)
    out = rrhf_loss(
        logits,
        labels,
        batch["rewards"],
        batch["sources"],
        batch["group_ids"],
        options=trainer.loss_options,
        speedups=batch["speedups"],
    )
    assert out.best_index.tolist() == [1]  # the sample, not the target, although the target comes first
    # Pairs: target < each copy, and slow (R3) < the three R4s; never copy < copy.
    assert int(out.num_pairs) == 2 + 3
    plain = rrhf_loss(
        logits,
        labels,
        batch["rewards"],
        batch["sources"],
        batch["group_ids"],
        options=dataclasses.replace(trainer.loss_options, speedup_margin=None),
        speedups=batch["speedups"],
    )
    assert plain.best_index.tolist() == [0] and int(plain.num_pairs) == 3
    assert trainer.candidate_log[-1]["beats_target_rate"] == pytest.approx(2 / 3)  # two copies of three
    assert Tier.R4 == 4


def test_tests_only_rows_mix_with_labelled_rows(models, tmp_path):
    """Rows without a target train beside labelled rows: their groups hold generated candidates only, the loss
    counts the prompts without ranking signal apart, and training runs and logs as usual."""
    from perfrl_trl.loss import SourceKind

    rows = _rows((10, 2000, 50, 7))
    for row in rows[1::2]:
        row["target_code"] = None
    data = Dataset.from_list(rows)
    trainer = RRHFTrainer(
        models["t5"], args=_args(tmp_path, max_steps=2, learning_rate=1e-2), train_dataset=data
    )
    batch = trainer._generate_and_score(rows[:2])
    k = trainer.args.num_random_samples + trainer.args.num_greedy_samples
    assert batch["group_ids"].tolist() == [0] * (k + 1) + [1] * k
    assert [s == SourceKind.TARGET for s in batch["sources"].tolist()].count(True) == 1
    assert batch["sources"][batch["group_ids"] == 1].ne(SourceKind.TARGET).all()

    # Prompts whose candidates all got one reward (no R4 pair can differ by speed here: only a target can be
    # R4, and a group has one) form no pair; that share is logged, from the loss's own count.
    tied = [batch["rewards"][batch["group_ids"] == g].unique().numel() == 1 for g in (0, 1)]
    assert trainer.candidate_log[-1]["groups_without_signal"] == sum(tied) / 2
    assert trainer.candidate_log[-1]["beats_target_rate"] is not None  # one row had a (passing) target

    trainer.train()
    history = trainer.state.log_history
    assert sum("groups_without_signal" in h for h in history) == 2
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in history if "loss" in h)
    # Each update logged its candidates under its own step.
    assert [r["step"] for r in trainer.candidate_log[1:]] == [1, 2]


def test_a_tests_only_row_without_samples_is_a_clear_error(models, tmp_path):
    rows = _rows((10,))
    rows[0]["target_code"] = None
    args = _args(tmp_path, max_steps=1, num_random_samples=0, num_greedy_samples=0)
    trainer = RRHFTrainer(models["t5"], args=args, train_dataset=Dataset.from_list(rows))
    with pytest.raises(ValueError, match="has no target_code and the config generates no candidate"):
        trainer.train()


def test_rewrite_candidates_give_a_tests_only_prompt_a_correct_program_to_rank_first(models, tmp_path):
    """A tests-only row whose samples all fail (a random tiny model) gets the library's generic rewrites of its
    slow program as candidates: judged like the others, correct, ranked first and trained on, while the logged
    rates of the model's own candidates leave them out."""
    from perfrl_trl.loss import SourceKind, select_best

    rows = _rows((300000,))
    rows[0]["target_code"] = None
    args = _args(tmp_path, max_steps=1, learning_rate=1e-2, rewrite_candidates=2, max_completion_length=96)
    trainer = RRHFTrainer(models["t5"], args=args, train_dataset=Dataset.from_list(rows))
    batch = trainer._generate_and_score(rows)
    sources, rewards = batch["sources"], batch["rewards"]
    rewrites = sources == SourceKind.REWRITE
    assert rewrites.sum() == 2 and sources.ne(SourceKind.TARGET).all()
    assert (rewards[rewrites] >= 1.3).all()  # R3 or R4: each rewrite passes the tests
    assert (rewards[~rewrites] < 1.3).all()  # the untrained model's candidates do not
    best = select_best(rewards, sources, batch["group_ids"])
    assert sources[best].item() == SourceKind.REWRITE
    assert trainer.candidate_log[-1]["groups_without_signal"] == 0
    assert trainer.candidate_log[-1]["pass_rate"] == 0  # the rewrites are not the model's candidates

    trainer.train()
    assert torch.isfinite(torch.tensor(trainer.state.log_history[0]["loss"]))


def test_rewrite_candidates_need_the_slow_program_column(models, tmp_path):
    rows = _rows((10,))
    for row in rows:
        row.pop("input_code")

    def length(prompts, completions, **_):  # a custom reward that needs no slow program
        return [float(len(c)) for c in completions]

    data = Dataset.from_list(rows)
    RRHFTrainer(models["t5"], args=_args(tmp_path, max_steps=1), train_dataset=data, reward_funcs=length)
    args = _args(tmp_path, max_steps=1, rewrite_candidates=1)
    with pytest.raises(ValueError, match=r"missing the column\(s\) \['input_code'\]"):
        RRHFTrainer(models["t5"], args=args, train_dataset=data, reward_funcs=length)


@pytest.mark.parametrize("arch", ["t5", "decoder"])
def test_the_update_forward_skips_copies_and_padding_with_the_same_log_probs_and_gradients(arch, models):
    """Each prompt encoded once and rows in chunks of similar length: the one padded pass's numbers, less work."""
    from perfrl_trl.collator import RRHFCandidateCollator
    from perfrl_trl.trainer.forward import candidate_token_logps, length_chunks

    model, tokenizer = load_model_and_tokenizer(models[arch])
    seq2seq = arch == "t5"
    collator = RRHFCandidateCollator.from_tokenizer(tokenizer, is_encoder_decoder=seq2seq)
    examples = [
        {
            "prompt_ids": [5, 6, 7, 8],
            "completion_ids": [[9], [10, 11, 12, 20, 21, 22], [13, 14]],
            "rewards": [1, 2, 0],
        },
        {"prompt_ids": [15, 16], "completion_ids": [[17, 18], [19]], "rewards": [0.0, 1.0]},
    ]
    batch = collator(examples)
    labels, group_ids = batch["labels"], batch["group_ids"]
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids") if k in batch}
    assert ("position_ids" in inputs) == (not seq2seq)  # the decoder's batches are left-padded
    results = []
    for single_pass in (True, False):
        model.zero_grad()
        logps = candidate_token_logps(
            model,
            dict(inputs),
            labels,
            group_ids,
            is_encoder_decoder=seq2seq,
            single_pass=single_pass,
            max_chunks=3,
        )
        # A loss that weighs every scored token differently, so that a misplaced one changes the gradients.
        (logps * torch.arange(1, logps.numel() + 1).view_as(logps)).sum().backward()
        results.append(
            (logps.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        )
    (padded, padded_grads), (chunked, chunked_grads) = results
    scored = (labels if seq2seq else torch.nn.functional.pad(labels[:, 1:], (0, 1), value=-100)) != -100
    assert (padded[scored] < 0).all() and (padded[~scored] == 0).all()
    torch.testing.assert_close(chunked, padded, rtol=1e-5, atol=1e-5)
    assert padded_grads.keys() == chunked_grads.keys()
    for name, grad in padded_grads.items():
        # float32 sums in another order (and, with two threads, another split): errors scale with the gradient
        scale = max(1.0, grad.abs().max().item())
        torch.testing.assert_close(chunked_grads[name], grad, rtol=1e-4, atol=1e-5 * scale, msg=name)
    assert length_chunks([3, 7, 1, 2, 2], max_chunks=3) == [[2, 3, 4], [0], [1]]
    assert length_chunks([5, 5, 5], max_chunks=4) == [[0, 1, 2]] and length_chunks([], 4) == []


class _BatchRecordingTrainer(RRHFTrainer):
    """Notes the sources of each group of every micro-batch the update trains on."""

    def training_step(self, model, inputs, num_items_in_batch=None):
        groups = inputs["group_ids"].tolist()
        sources = inputs["sources"].tolist()
        self.trained = getattr(self, "trained", []) + [
            [[s for s, g in zip(sources, groups) if g == k] for k in sorted(set(groups))]
        ]
        return super().training_step(model, inputs, num_items_in_batch)


def _mostly_tests_only(n_rows=12):
    """One labelled row in three: its group (greedy decode and target) ranks the passing target first; a
    tests-only row's group is its greedy decode alone, which forms no pair and, failing, has nothing to imitate."""
    rows = _rows(tuple(range(10, 10 + n_rows)))
    for i, row in enumerate(rows):
        if i % 3:
            row["target_code"] = None
    return Dataset.from_list(rows)


@pytest.mark.parametrize("extra", [0, 4])
def test_dynamic_sampling_trains_on_groups_with_a_loss_term(models, tmp_path, extra):
    from perfrl_trl.loss import SourceKind

    args = _args(
        tmp_path,
        max_steps=2,
        num_random_samples=0,
        seed=3,
        dynamic_sampling_batches=extra,
        learning_rate=1e-2,
    )
    trainer = _BatchRecordingTrainer(models["t5"], args=args, train_dataset=_mostly_tests_only())
    trainer.train()
    assert trainer.state.global_step == 2
    assert [len(batch) for batch in trainer.trained] == [2, 2]  # the step keeps its size
    labelled = [SourceKind.TARGET in group for batch in trainer.trained for group in batch]
    logged = [h for h in trainer.state.log_history if "loss" in h]
    if extra:
        # Every empty group was replaced by a labelled one drawn from the epoch's next prompts.
        assert all(labelled)
        assert sum(h["dynamic_sampling/extra_batches"] for h in logged) > 0
        assert all(h["dynamic_sampling/empty_groups_trained"] == 0 for h in logged)
    else:
        assert not all(labelled)  # without it, tests-only rows' empty groups are trained on
        assert not any("dynamic_sampling/extra_batches" in h for h in logged)


def test_dynamic_sampling_keeps_empty_groups_when_short_and_ends_the_epoch_early(models, tmp_path):
    from perfrl_trl.loss import SourceKind

    # Six rows, one labelled: the first step draws every extra micro-batch it may (2) and, still short, keeps
    # an empty group; the epoch's prompts then run out, so its third step never comes.
    data = _mostly_tests_only(6).map(lambda row, i: {"target_code": row["target_code"] if i == 0 else None},
                                     with_indices=True)  # fmt: skip
    args = _args(tmp_path, num_train_epochs=1, num_random_samples=0, seed=3, dynamic_sampling_batches=2)
    trainer = _BatchRecordingTrainer(models["t5"], args=args, train_dataset=data)
    trainer.train()
    assert trainer.state.global_step == 1
    [batch] = trainer.trained
    assert len(batch) == 2 and sum(SourceKind.TARGET in group for group in batch) == 1
    [logged] = [h for h in trainer.state.log_history if "loss" in h]
    assert logged["dynamic_sampling/extra_batches"] == 2
    assert logged["dynamic_sampling/empty_groups_trained"] == 0.5


def test_dynamic_sampling_carries_the_groups_a_step_has_no_room_for(models, tmp_path):
    """Judged for real: a step short of groups with signal draws a micro-batch, trains on what it needs, and the
    next step trains first on the group left over; when the prompts run out it keeps an empty group."""
    from perfrl_trl.loss import SourceKind

    rows = _rows((10, 11, 12, 13, 14, 15))
    labelled, tests_only = rows[:3], rows[3:]
    for row in tests_only:
        row["target_code"] = None
    args = _args(tmp_path, num_random_samples=0, dynamic_sampling_batches=2)
    trainer = RRHFTrainer(models["t5"], args=args, train_dataset=Dataset.from_list(rows))
    device = trainer.args.device

    def step(first, later):
        batches = trainer._replace_empty_groups(
            [trainer._score(trainer._generate(first))], iter(later), device
        )
        [batch] = batches
        return [
            SourceKind.TARGET in batch["sources"][batch["group_ids"] == g].tolist()
            for g in range(int(batch["group_ids"].max()) + 1)
        ]

    # One group with signal of two; the drawn micro-batch has two more: one fills the step, one is carried.
    assert step([labelled[0], tests_only[0]], [[labelled[1], labelled[2]]]) == [True, True]
    assert len(trainer._carry) == 1
    # The carried group comes first; the prompts have run out, so an empty group fills the step.
    assert step([tests_only[1], tests_only[2]], []) == [True, False]
    assert trainer._carry == []
    logged = trainer._metrics["train"]
    assert logged["dynamic_sampling/extra_batches"] == [1.0, 0.0]
    assert logged["dynamic_sampling/empty_groups_trained"] == [0.0, 0.5]
