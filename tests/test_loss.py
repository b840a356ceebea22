"""Hand-computed checks of the RRHF losses in `perfrl_trl.loss`.

Most tests use one next-token distribution at every position, ``q = [1/2, 1/4, 1/8, 1/8]``, so the token
log-probabilities are ``log q = [-1, -2, -3, -3] · ln 2`` and every expected value is a multiple of ``ln 2``.
"""

import doctest
import math

import pytest
import torch
from torch.testing import assert_close

import perfrl_trl.loss as loss_module
from perfrl_trl.loss import (
    RRHFLossOptions,
    SourceKind,
    count_normalisers,
    outranks,
    pairwise_sequence_scores,
    rank_loss,
    rrhf_loss,
    select_best,
    sequence_scores,
    shift_labels,
    token_log_probs,
    tuning_loss,
)

LN2 = math.log(2.0)
R, G, T = SourceKind.RANDOM, SourceKind.GREEDY, SourceKind.TARGET
Q = torch.tensor([0.5, 0.25, 0.125, 0.125])


def q_logits(n: int, length: int) -> torch.Tensor:
    """``[n, length, 4]`` logits whose softmax is ``Q`` at every position."""
    return Q.log().expand(n, length, 4).clone()


def scalar(x: float) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float32)


def test_doctests():
    assert doctest.testmod(loss_module).failed == 0


def test_shift_labels():
    labels = torch.tensor([[-100, -100, 7, 8], [-100, 5, 6, -100]])
    assert shift_labels(labels).tolist() == [[-100, 7, 8, -100], [5, 6, -100, -100]]


def test_sequence_scores_by_hand():
    """Row 0: tokens (0, 1), then padding: sum = -(1 + 2) ln2 = -3 ln2, mean = -1.5 ln2.
    Row 1: tokens (2, 2, 3): sum = -9 ln2, mean = -3 ln2. With α = 0.5: sum / len ** 0.5."""
    logits = q_logits(2, 3)
    labels = torch.tensor([[0, 1, -100], [2, 2, 3]])
    scores, token_logps, mask = sequence_scores(logits, labels)
    assert_close(scores, torch.tensor([-1.5, -3.0]) * LN2)
    assert_close(token_logps, torch.tensor([[-1.0, -2.0, 0.0], [-3.0, -3.0, -3.0]]) * LN2)
    assert mask.tolist() == [[True, True, False], [True, True, True]]

    sums, _, _ = sequence_scores(logits, labels, length_normalize=False)
    assert_close(sums, torch.tensor([-3.0, -9.0]) * LN2)
    sqrt_norm, _, _ = sequence_scores(logits, labels, length_penalty=0.5)
    assert_close(sqrt_norm, torch.tensor([-3.0 / math.sqrt(2), -9.0 / math.sqrt(3)]) * LN2)


def test_padding_is_ignored():
    """Garbage logits at the padded position change nothing."""
    logits = q_logits(1, 3)
    labels = torch.tensor([[0, 1, -100]])
    noisy = logits.clone()
    noisy[0, 2] = torch.tensor([50.0, -50.0, 3.0, 0.0])
    assert_close(sequence_scores(noisy, labels)[0], sequence_scores(logits, labels)[0])
    out_a = rrhf_loss(logits.expand(2, 3, 4), labels.expand(2, 3), torch.tensor([0.0, 1.0]))
    out_b = rrhf_loss(torch.cat([logits, noisy]), labels.expand(2, 3), torch.tensor([0.0, 1.0]))
    assert_close(out_a.loss, out_b.loss)


def test_empty_candidate_scores_zero():
    scores, _, _ = sequence_scores(q_logits(1, 2), torch.tensor([[-100, -100]]))
    assert_close(scores, torch.zeros(1))


def test_half_precision_log_probs_match_float32():
    logits = torch.randn(3, 5, 11)
    labels = torch.randint(0, 11, (3, 5))
    labels[0, :2] = -100
    ref, _ = token_log_probs(logits, labels)
    half, _ = token_log_probs(logits.to(torch.bfloat16), labels)
    assert half.dtype == torch.float32
    assert_close(half, ref, atol=0.05, rtol=0.02)


def test_rank_loss_by_hand():
    """scores p = (-1, -2, -0.5, -3), rewards r = (0, 1, 1, 2). Pairs (worse, better) and hinge max(0, p_w - p_b):
    (0,1): -1+2 = 1;  (0,2): -1+0.5 < 0 -> 0;  (0,3): -1+3 = 2;  (1,3): -2+3 = 1;  (2,3): -0.5+3 = 2.5.
    (1,2) have equal reward: no pair. Total 6.5. With margin 0.5 every term gains 0.5 and (0,2) becomes
    max(0, 0) = 0: 1.5 + 0 + 2.5 + 1.5 + 3 = 8.5."""
    scores = torch.tensor([-1.0, -2.0, -0.5, -3.0])
    rewards = torch.tensor([0.0, 1.0, 1.0, 2.0])
    assert_close(rank_loss(scores, rewards), scalar(6.5))
    assert_close(rank_loss(scores, rewards, margin=0.5), scalar(8.5))


def test_rank_loss_groups_ties_and_all_equal():
    """Group 0 as above (6.5); group 1 has all-equal rewards: no pair, no signal, so it does not dilute the
    mean, which is over the one prompt with a pair: 6.5 (the paper's mean over both prompts would be 3.25).
    The [B, K] form, group_size and interleaved group_ids agree; a group with a pair (0 + 1.0) halves it."""
    scores = torch.tensor([[-1.0, -2.0, -0.5, -3.0], [-1.0, -9.0, 0.0, -2.0]])
    rewards = torch.tensor([[0.0, 1.0, 1.0, 2.0], [1.3, 1.3, 1.3, 1.3]])
    assert_close(rank_loss(scores, rewards), scalar(6.5))
    assert_close(rank_loss(scores.flatten(), rewards.flatten(), group_size=4), scalar(6.5))
    perm = torch.tensor([0, 4, 1, 5, 2, 6, 3, 7])
    ids = torch.tensor([7, 9, 7, 9, 7, 9, 7, 9])
    assert_close(rank_loss(scores.flatten()[perm], rewards.flatten()[perm], ids), scalar(6.5))
    signal = torch.tensor([[1.3, 1.3, 1.3, 2.0]])  # pairs (0,3), (1,3), (2,3): hinges 1, 0, 2 -> 3.0
    assert_close(rank_loss(scores, torch.cat([rewards[:1], signal])), scalar((6.5 + 3.0) / 2))
    # Across prompts nothing pairs up: a prompt's bad candidate is never compared with another prompt's good one.
    assert_close(rank_loss(torch.tensor([[0.0], [-5.0]]), torch.tensor([[0.0], [2.0]])), scalar(0.0))
    # Ties with very different scores form no pair.
    assert_close(rank_loss(torch.tensor([0.0, -5.0]), torch.tensor([1.0, 1.0])), scalar(0.0))


def test_select_best_tie_break_priority():
    rewards = torch.tensor([2.0, 2.0, 2.0, 1.0])
    sources = torch.tensor([T, G, R, R])
    assert select_best(rewards, sources).tolist() == [2]  # random > greedy > target
    assert select_best(rewards, sources, priority=("target", "greedy", "random")).tolist() == [0]
    assert select_best(rewards[:2], sources[:2]).tolist() == [1]  # greedy beats target
    # A higher reward always beats the priority.
    assert select_best(torch.tensor([2.0, 1.3]), torch.tensor([T, R])).tolist() == [0]
    # Two random samples tie: the first row wins; no sources: the first row wins.
    assert select_best(torch.tensor([1.0, 2.0, 2.0]), torch.tensor([R, R, R])).tolist() == [1]
    assert select_best(torch.tensor([2.0, 2.0])).tolist() == [0]
    # Sources missing from the priority rank last.
    assert select_best(torch.tensor([2.0, 2.0]), torch.tensor([R, T]), priority=["target"]).tolist() == [1]
    # Several groups, given by ids in any order; the result follows ascending group id.
    ids = torch.tensor([5, 3, 5, 3])
    out = select_best(torch.tensor([1.0, 0.0, 1.0, 2.0]), torch.tensor([T, R, R, G]), ids)
    assert out.tolist() == [3, 2]


def test_tuning_loss_by_hand():
    """Best row 1 has token log-probs (-1, -2) and one padded position: NLL = 3 over 2 tokens = 1.5;
    normalised by num_items_in_batch = 6 instead: 0.5."""
    token_logps = torch.tensor([[-5.0, -5.0, -5.0], [-1.0, -2.0, 0.0]])
    labels = torch.tensor([[1, 1, 1], [1, 1, -100]])
    rewards = torch.tensor([0.0, 1.0])
    assert_close(tuning_loss(token_logps, labels, rewards), scalar(1.5))
    assert_close(tuning_loss(token_logps, labels, rewards, num_items_in_batch=6), scalar(0.5))


def _three_candidates():
    """One prompt, three candidates under Q:
    c0 tokens (0, 0)     reward 0, random: sum -2 ln2, p0 = -ln2
    c1 tokens (1, 2, 3)  reward 2, target: sum -8 ln2, p1 = -8/3 ln2
    c2 tokens (1)        reward 2, greedy: sum -2 ln2, p2 = -2 ln2
    """
    logits = q_logits(3, 3).requires_grad_()
    labels = torch.tensor([[0, 0, -100], [1, 2, 3], [1, -100, -100]])
    return logits, labels, torch.tensor([0.0, 2.0, 2.0]), torch.tensor([R, T, G])


def test_rrhf_loss_by_hand():
    """Best: c1 and c2 tie at reward 2, greedy beats target -> c2, L_tuning = 2 ln2 / 1 token = 2 ln2.
    Pairs: (0,1): max(0, -1 + 8/3) ln2 = 5/3 ln2; (0,2): max(0, -1 + 2) ln2 = ln2; (1,2) tie.
    L_rank = 8/3 ln2; L = a * 8/3 ln2 + 2 ln2. Without length normalisation the scores are the sums
    (-2, -8, -2) ln2: (0,1) gives 6 ln2, (0,2) gives 0, so L = 6 ln2 + 2 ln2 = 8 ln2."""
    logits, labels, rewards, sources = _three_candidates()
    out = rrhf_loss(logits, labels, rewards, sources)
    assert out.best_index.tolist() == [2]
    assert_close(out.tuning_loss, scalar(2 * LN2))
    assert_close(out.rank_loss, scalar(8 / 3 * LN2))
    assert_close(out.loss, scalar(14 / 3 * LN2))
    assert_close(out.scores, torch.tensor([-1.0, -8 / 3, -2.0]) * LN2)
    assert (int(out.num_pairs), int(out.num_active_pairs), int(out.num_correct_pairs)) == (2, 2, 0)
    assert int(out.num_best_tokens) == 1 and out.rank_accuracy == 0.0

    half = rrhf_loss(logits, labels, rewards, sources, options=RRHFLossOptions(rank_weight=0.5))
    assert_close(half.loss, scalar(10 / 3 * LN2))
    summed = rrhf_loss(logits, labels, rewards, sources, options=RRHFLossOptions(length_normalize=False))
    assert_close(summed.loss, scalar(8 * LN2))
    # Target-first priority picks c1: L_tuning = 8 ln2 / 3 tokens.
    target_first = rrhf_loss(
        logits, labels, rewards, sources, options=RRHFLossOptions(priority=("target", "greedy", "random"))
    )
    assert out.best_index.tolist() != target_first.best_index.tolist() == [1]
    assert_close(target_first.tuning_loss, scalar(8 / 3 * LN2))

    out.loss.backward()
    assert torch.isfinite(logits.grad).all()
    assert logits.grad[2, 1:].abs().sum() == 0  # padded positions get no gradient


def test_all_equal_rewards_rank_loss_is_zero():
    logits, labels, _, sources = _three_candidates()
    out = rrhf_loss(logits, labels, torch.ones(3), sources)
    assert_close(out.rank_loss, scalar(0.0))
    assert int(out.num_pairs) == 0 and math.isnan(out.rank_accuracy)
    assert out.best_index.tolist() == [0]  # all tie: the random sample wins
    assert_close(out.loss, out.tuning_loss)


def test_gradient_accumulation_matches_full_batch():
    """Two half-batches normalised by the full batch's counts sum to the full-batch loss and gradient."""
    torch.manual_seed(0)
    groups, k, length, vocab = 4, 3, 6, 7
    n = groups * k
    logits = torch.randn(n, length, vocab, requires_grad=True)
    labels = torch.randint(0, vocab, (n, length))
    lengths = torch.randint(1, length + 1, (n,))
    labels[torch.arange(length)[None, :] >= lengths[:, None]] = -100
    rewards = torch.tensor([0.0, 1.0, 1.3, 2.0])[torch.randint(0, 4, (n,))]
    sources = torch.tensor([R, G, T]).repeat(groups)
    group_ids = torch.arange(groups).repeat_interleave(k)

    # Speed-aware ranking and a tuning threshold change both normalisers; they must stay exact.
    speedups = torch.where(rewards == 2.0, torch.rand(n) * 3 + 1, torch.nan)
    options = RRHFLossOptions(speedup_margin=1.1, tuning_min_reward=1.3)
    full = rrhf_loss(logits, labels, rewards, sources, group_ids, options=options, speedups=speedups)
    (grad_full,) = torch.autograd.grad(full.loss, logits)

    num_items, with_signal = count_normalisers(
        labels, rewards, sources, group_ids, options=options, speedups=speedups
    )
    assert (num_items, with_signal) == (int(full.num_best_tokens), int(full.num_groups_with_signal))
    assert 0 < with_signal <= groups
    total, grad_acc = 0.0, torch.zeros_like(logits)
    for half in (slice(0, n // 2), slice(n // 2, n)):
        part = rrhf_loss(
            logits[half],
            labels[half],
            rewards[half],
            sources[half],
            group_ids[half],
            options=options,
            speedups=speedups[half],
            num_items_in_batch=num_items,
            num_groups_in_batch=with_signal,
        )
        total = total + part.loss
        grad_acc += torch.autograd.grad(part.loss, logits)[0]
    assert_close(total, full.loss)
    assert_close(grad_acc, grad_full)


def _shared_prefix_pair():
    """Bad a = (0, 0, 0, 0), reward 0, mean -ln2; good b = (0, 0, 1), reward 1, mean -4/3 ln2.
    Whole sequences: hinge = -1 + 4/3 = 1/3 ln2. Common prefix (0, 0): suffixes a' = (0, 0) with mean -ln2 and
    b' = (1) with mean -2 ln2: hinge = -1 + 2 = ln2."""
    logits = q_logits(2, 4).requires_grad_()
    labels = torch.tensor([[0, 0, 0, 0], [0, 0, 1, -100]])
    return logits, labels, torch.tensor([0.0, 1.0])


def test_rank_on_differing_tokens_by_hand():
    logits, labels, rewards = _shared_prefix_pair()
    paper = rrhf_loss(logits, labels, rewards)
    suffix = rrhf_loss(logits, labels, rewards, options=RRHFLossOptions(rank_on_differing_tokens=True))
    assert_close(paper.rank_loss, scalar(LN2 / 3))
    assert_close(suffix.rank_loss, scalar(LN2))
    assert_close(suffix.tuning_loss, paper.tuning_loss)  # only the ranking changes
    token_logps, _ = token_log_probs(logits, labels)
    pairwise = pairwise_sequence_scores(token_logps, labels)
    # out[i, j]: i's mean over its tokens after the (i, j) prefix; the diagonal has no suffix.
    assert_close(pairwise.detach(), torch.tensor([[0.0, -1.0], [-2.0, 0.0]]) * LN2)


def test_rank_on_differing_tokens_leaves_shared_prefix_alone():
    """With length normalisation the paper's loss moves the shared prefix by (1/|a| - 1/|b|); the option does not."""
    logits, labels, rewards = _shared_prefix_pair()
    (grad_paper,) = torch.autograd.grad(rrhf_loss(logits, labels, rewards).rank_loss, logits)
    (grad_suffix,) = torch.autograd.grad(
        rrhf_loss(logits, labels, rewards, options=RRHFLossOptions(rank_on_differing_tokens=True)).rank_loss,
        logits,
    )
    assert grad_paper[:, :2].abs().sum() > 0
    assert grad_suffix[:, :2].abs().sum() == 0
    assert grad_suffix[:, 2:].abs().sum() > 0


def test_rank_on_differing_tokens_edge_cases():
    # Identical programs with different rewards (timing noise) contribute nothing.
    logits = q_logits(2, 3)
    labels = torch.tensor([[0, 1, 2], [0, 1, 2]])
    out = rrhf_loss(
        logits, labels, torch.tensor([1.3, 2.0]), options=RRHFLossOptions(rank_on_differing_tokens=True)
    )
    assert_close(out.rank_loss, scalar(0.0))
    # Without length normalisation the shared prefix cancels anyway: both variants agree.
    logits = torch.randn(3, 5, 6)
    labels = torch.tensor([[1, 2, 3, 4, -100], [1, 2, 5, -100, -100], [1, 2, 3, 0, 0]])
    # Same context, same token -> same log-prob on the shared prefix, as in a real model.
    logits[1, :2] = logits[0, :2]
    logits[2, :4] = logits[0, :4]
    rewards = torch.tensor([0.0, 1.0, 2.0])
    a = rrhf_loss(logits, labels, rewards, options=RRHFLossOptions(length_normalize=False))
    b = rrhf_loss(
        logits,
        labels,
        rewards,
        options=RRHFLossOptions(length_normalize=False, rank_on_differing_tokens=True),
    )
    assert_close(a.rank_loss, b.rank_loss)
    # Prefixes are found on the scored tokens, so left padding gives the same pairwise scores.
    token_logps, _ = token_log_probs(logits, labels)
    right = pairwise_sequence_scores(token_logps, labels)
    shift = (labels == -100).sum(1)
    left_labels = torch.stack([row.roll(int(s)) for row, s in zip(labels, shift)])
    left_logps = torch.stack([row.roll(int(s)) for row, s in zip(token_logps, shift)])
    assert_close(pairwise_sequence_scores(left_logps, left_labels), right)


def test_rank_margin_and_length_penalty_in_rrhf_loss():
    """Margin 1.0 on the three-candidate case: (0,1): 5/3 ln2 + 1; (0,2): ln2 + 1."""
    logits, labels, rewards, sources = _three_candidates()
    out = rrhf_loss(logits, labels, rewards, sources, options=RRHFLossOptions(rank_margin=1.0))
    assert_close(out.rank_loss, scalar(8 / 3 * LN2 + 2.0))
    # length_penalty=0 scores by the sum, like length_normalize=False.
    a = rrhf_loss(logits, labels, rewards, sources, options=RRHFLossOptions(length_penalty=0.0))
    b = rrhf_loss(logits, labels, rewards, sources, options=RRHFLossOptions(length_normalize=False))
    assert_close(a.loss, b.loss)


def test_errors():
    with pytest.raises(ValueError, match="group_size"):
        rank_loss(torch.zeros(5), torch.zeros(5), group_size=2)
    with pytest.raises(ValueError, match="NaN"):
        select_best(torch.tensor([0.0, float("nan")]))
    with pytest.raises(ValueError, match="duplicate"):
        select_best(torch.zeros(2), priority=("random", "random"))
    with pytest.raises(ValueError, match="Unknown candidate source"):
        select_best(torch.zeros(2), priority=("random", "beam"))
    with pytest.raises(ValueError, match="group_ids"):
        select_best(torch.zeros(3), group_ids=torch.zeros(2))
    with pytest.raises(ValueError, match="speedups has 2 entries"):
        select_best(torch.zeros(3), speedups=torch.ones(2), speedup_margin=1.1)
    with pytest.raises(ValueError, match="speedup_margin"):
        RRHFLossOptions(speedup_margin=0.9)


SPEED = RRHFLossOptions(speedup_margin=1.1)


def test_faster_than_target_sample_outranks_the_target_and_is_imitated():
    """Target and a random sample both R4 (2.0): the sample's 2.4x is more than 1.1 times the target's 1.5x,
    so it outranks the target and is the tuning term's target; without speed-ups they tie and the paper's
    priority (random first) picks the sample too, but the target is not ranked below it."""
    rewards, sources = torch.tensor([2.0, 2.0, 1.3]), torch.tensor([T, R, G])
    speedups = torch.tensor([1.5, 2.4, float("nan")])
    pairs = outranks(rewards, torch.zeros(3, dtype=torch.long), speedups, 1.1)
    assert pairs.nonzero().tolist() == [[0, 1], [2, 0], [2, 1]]  # target < sample; greedy (R3) < both
    assert not outranks(rewards, torch.zeros(3, dtype=torch.long))[0, 1]
    # With the target first in priority, the tie would pick the target; speed-aware ranking picks the sample.
    target_first = ("target", "greedy", "random")
    assert select_best(rewards, sources, priority=target_first).tolist() == [0]
    assert select_best(
        rewards, sources, priority=target_first, speedups=speedups, speedup_margin=1.1
    ).tolist() == [1]

    # The loss: the target is pushed below the sample (a hinge it did not have), and the sample is imitated.
    logits = torch.zeros(3, 2, 4, requires_grad=True)
    labels = torch.tensor([[0, 1], [2, 3], [1, 1]])
    opts = RRHFLossOptions(priority=target_first, speedup_margin=1.1)
    out = rrhf_loss(logits, labels, rewards, sources, options=opts, speedups=speedups)
    assert out.best_index.tolist() == [1] and int(out.num_pairs) == 3
    plain = rrhf_loss(logits, labels, rewards, sources, options=RRHFLossOptions(priority=target_first))
    assert plain.best_index.tolist() == [0] and int(plain.num_pairs) == 2
    (grad,) = torch.autograd.grad(out.tuning_loss, logits)
    assert grad[1].abs().sum() > 0 and grad[0].abs().sum() == 0 and grad[2].abs().sum() == 0


def test_copies_and_speedups_within_the_margin_never_outrank_each_other():
    """Two copies of one program (same reward and speed-up), or speed-ups 1.5 and 1.6 (within 1.1x), form no
    pair; 1.5 and 1.66 do. A NaN speed-up is never compared."""
    g = torch.zeros(2, dtype=torch.long)
    r = torch.tensor([2.0, 2.0])
    for speedups in ([1.5, 1.5], [1.5, 1.6], [float("nan"), 9.0]):
        assert not outranks(r, g, torch.tensor(speedups), 1.1).any(), speedups
        assert_close(
            rank_loss(torch.tensor([0.0, -5.0]), r, speedups=torch.tensor(speedups), speedup_margin=1.1),
            scalar(0.0),
        )
    assert outranks(r, g, torch.tensor([1.5, 1.66]), 1.1).tolist() == [[False, True], [False, False]]
    # Faster-by-the-margin is transitive, so "outranks" has no cycle and some candidate is always on top.
    sp = torch.tensor([1.0, 1.08, 1.16, 1.25, 1.35])
    pairs = outranks(torch.full((5,), 2.0), torch.zeros(5, dtype=torch.long), sp, 1.1)
    assert (pairs.int() @ pairs.int() > 0).le(pairs).all()
    assert select_best(torch.full((5,), 2.0), speedups=sp, speedup_margin=1.1).tolist() == [3]


def test_tests_only_groups_without_signal_or_passing_candidate():
    """Three prompts without a target: one whose candidates all fail alike (no pair, no signal), one whose best
    candidate only compiles (pairs, but below tuning_min_reward: nothing imitated), one with a passing candidate.
    Only the last is imitated; the rank mean is over the two prompts with a pair."""
    rewards = torch.tensor([0.0, 0.0, 1.0, 0.0, 1.3, 1.0])
    group_ids = torch.tensor([0, 0, 1, 1, 2, 2])
    labels = torch.tensor([[0, 1], [1, 0], [2, 2], [3, 3], [0, 0], [1, -100]])
    logits = q_logits(6, 2).requires_grad_(True)
    opts = RRHFLossOptions(tuning_min_reward=1.3)
    out = rrhf_loss(logits, labels, rewards, torch.full((6,), R), group_ids, options=opts)
    assert int(out.num_groups_with_signal) == 2 and int(out.num_best_tokens) == 2
    assert_close(out.tuning_loss, scalar(LN2))  # candidate 4 = (0, 0): -log q0 = ln 2 per token
    # Group 1: p(2,2) = -3 ln2 > p(3,3) = -3 ln2? equal: hinge 0. Group 2: p(0,0) = -ln2, p(1) = -2 ln2: hinge 0.
    assert_close(out.rank_loss, scalar(0.0))
    assert count_normalisers(labels, rewards, None, group_ids, options=opts) == (2, 2)
    # Nothing to learn at all: a zero loss whose gradient is zero, not NaN.
    none = rrhf_loss(logits[:2], labels[:2], rewards[:2], group_ids=group_ids[:2], options=opts)
    (grad,) = torch.autograd.grad(none.loss, logits)
    assert none.loss.item() == 0.0 and torch.equal(grad, torch.zeros_like(grad))
    assert SourceKind.parse("Greedy") is G and SourceKind.parse(2) is T
