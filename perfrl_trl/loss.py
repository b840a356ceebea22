"""RRHF losses used by PerfRL, in plain torch.

PerfRL (Duan et al., arXiv 2312.05657) trains a code model with RRHF (Yuan et al., arXiv 2304.05302). For every
prompt ``x`` a group of candidate programs ``y_1 .. y_K`` (sampled, greedy and the reference target) is scored by
running unit tests, which gives rewards ``r_i``. With ``π`` the policy being trained:

* candidate score (RRHF):    ``p_i = Σ_t log π(y_{i,t} | x, y_{i,<t}) / |y_i|``
* ranking loss (RRHF):      ``L_rank = Σ_{r_i < r_j} max(0, p_i − p_j)``
* tuning loss (RRHF L_ft):  ``L_tuning = −Σ_t log π(y_{i',t} | x, y_{i',<t})`` with ``i' = argmax_i r_i``
* total (PerfRL):           ``L = a · L_rank + L_tuning``

PerfRL breaks ties for ``i'`` by the candidate's source, preferring the model's own samples: random > greedy >
target.

Speed-aware ranking ([`RRHFLossOptions`] ``speedup_margin``). With tier rewards every correct and faster program
gets the same R4, so a sample faster than a partly optimised target ties with it and nothing prefers it. Given
each candidate's measured speed-up, two candidates of equal reward are ordered when one is faster than the other
by more than the margin (``s_b > margin · s_a``), and stay tied otherwise: differences inside the timing's noise
are not ranked. "Outranks" is a strict order (it is transitive), so every group has candidates nobody outranks;
``i'`` is one of them, chosen by source priority. Candidates without a speed-up (``NaN``) are ordered by reward
only.

Groups without signal. A prompt whose candidates all tie forms no pair; ``L_rank`` is averaged over the prompts
that form at least one pair, so such prompts do not dilute it. ``tuning_min_reward`` drops the tuning term of a
prompt whose best candidate is below it: without a target (tests-only prompts) the best candidate may well fail
its tests, and imitating it would teach wrong programs.

Batching conventions. All candidates of a batch are flattened to ``N`` rows; ``group_ids`` (or a fixed
``group_size``) says which rows share a prompt. ``L_rank`` sums over the pairs of a prompt and is averaged over
the prompts that have a pair; ``L_tuning`` is the mean negative log-likelihood per best-candidate token. Both normalisers can be given for
the whole accumulated batch (``num_groups_in_batch``, ``num_items_in_batch``) so that summing the losses of the
micro-batches gives exactly the loss of the full batch.

Options against degeneration ([`RRHFLossOptions`] fields, all off by default, which is the paper's loss). A trial run showed RRHF increasing
programs that repeat until the token limit: a failing candidate usually shares a long prefix with a good one, so
pushing its probability down also moves the shared tokens. ``rank_on_differing_tokens`` scores each pair only on the
tokens after the two candidates' longest common prefix, ``rank_margin`` asks for a gap before a pair stops
contributing, and ``length_penalty`` is the exponent ``α`` of RRHF's reference code, ``p_i = Σ_t log π / |y_i|^α``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

import torch
import torch.nn.functional as F

__all__ = [
    "DEFAULT_PRIORITY",
    "RRHFLossOptions",
    "RRHFOutput",
    "SourceKind",
    "count_normalisers",
    "groups_with_loss_terms",
    "outranks",
    "pairwise_sequence_scores",
    "rank_loss",
    "rrhf_loss",
    "rrhf_loss_from_token_logps",
    "select_best",
    "sequence_scores",
    "shift_labels",
    "token_log_probs",
    "tuning_loss",
]


class SourceKind(IntEnum):
    """Where a candidate comes from. The integer codes are what collators and losses exchange."""

    RANDOM = 0
    GREEDY = 1
    TARGET = 2
    REWRITE = 3  # a generic rewrite of the row's slow program (``RRHFConfig.rewrite_candidates``)

    @classmethod
    def parse(cls, value: str | int | SourceKind) -> SourceKind:
        """Accepts ``"random"``/``"greedy"``/``"target"``/``"rewrite"`` (any case), an integer code or a member."""
        if isinstance(value, str):
            try:
                return cls[value.strip().upper()]
            except KeyError:
                names = ", ".join(repr(m.name.lower()) for m in cls)
                raise ValueError(f"Unknown candidate source {value!r}; expected one of {names}.") from None
        return cls(int(value))


DEFAULT_PRIORITY: tuple[str, ...] = ("random", "greedy", "target")


@dataclass(frozen=True)
class RRHFLossOptions:
    """The settings of [`rrhf_loss`]; the defaults are the paper's loss.

    Args:
        rank_weight: ``a``, weight of ``L_rank``.
        length_normalize: use length-normalised scores ``p_i`` (paper) instead of summed log-probabilities.
        length_penalty: exponent ``α`` in ``|y|^α`` (1.0 = paper).
        priority: tie-break order of sources for the best candidate, highest first.
        rank_margin: hinge margin of ``L_rank`` (0 = paper).
        rank_on_differing_tokens: score each pair only after its longest common prefix (anti-degeneration).
        speedup_margin: order candidates of equal reward by speed-up when one is faster than the other by more
            than this factor (``>= 1``; PIE's 1.10 is the reward's own margin); ``None`` leaves ties as ties (paper).
        tuning_min_reward: a group whose best candidate's reward is below this has no tuning term; ``None``
            always imitates the best candidate (paper).
        ignore_index: label value of prompt and padding positions.

    Example:
    ```python
    >>> RRHFLossOptions(rank_weight=0.5).priority
    ('random', 'greedy', 'target')

    ```
    """

    rank_weight: float = 1.0
    length_normalize: bool = True
    length_penalty: float = 1.0
    priority: Sequence[str | int | SourceKind] = DEFAULT_PRIORITY
    rank_margin: float = 0.0
    rank_on_differing_tokens: bool = False
    speedup_margin: float | None = None
    tuning_min_reward: float | None = None
    ignore_index: int = -100

    def __post_init__(self):
        object.__setattr__(
            self, "priority", tuple(self.priority)
        )  # frozen, hashable, and a list given is copied
        if self.speedup_margin is not None and not self.speedup_margin >= 1.0:
            raise ValueError(f"speedup_margin must be >= 1 or None, got {self.speedup_margin!r}")


@dataclass
class RRHFOutput:
    """Result of [`rrhf_loss`].

    Args:
        loss: ``rank_weight · rank_loss + tuning_loss`` (scalar, with graph).
        rank_loss: ``L_rank`` (scalar, with graph).
        tuning_loss: ``L_tuning`` (scalar, with graph).
        best_index: ``[G]`` row index of the best candidate of each group, groups in ascending id order.
        scores: ``[N]`` per-candidate scores ``p_i`` (detached; whole-sequence scores even when the rank loss uses
            ``rank_on_differing_tokens``).
        group_ids: ``[N]`` dense group index of each row (``0..G-1``).
        num_pairs: number of ordered pairs ``(i, j)`` of a group with ``r_i < r_j``.
        num_active_pairs: pairs with a non-zero hinge (they produce gradient).
        num_correct_pairs: pairs already ranked right (better candidate scored strictly higher).
        num_best_tokens: tokens of the best candidates the tuning term trains on in this batch.
        num_groups_with_signal: groups with at least one ranked pair.
    """

    loss: torch.Tensor
    rank_loss: torch.Tensor
    tuning_loss: torch.Tensor
    best_index: torch.Tensor
    scores: torch.Tensor
    group_ids: torch.Tensor
    num_pairs: torch.Tensor
    num_active_pairs: torch.Tensor
    num_correct_pairs: torch.Tensor
    num_best_tokens: torch.Tensor
    num_groups_with_signal: torch.Tensor

    @property
    def rank_accuracy(self) -> float:
        """Fraction of ordered pairs already ranked right; ``nan`` when the batch has no pair."""
        n = int(self.num_pairs)
        return float(self.num_correct_pairs) / n if n else float("nan")


def shift_labels(labels: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Aligns decoder-only labels with the logits: ``out[:, t] = labels[:, t + 1]``, last column ignored.

    Keeping the ``[N, T]`` shape (rather than slicing the logits) avoids copying the large logits tensor.

    Example:
    ```python
    >>> shift_labels(torch.tensor([[-100, 5, 6]]))
    tensor([[   5,    6, -100]])

    ```
    """
    return F.pad(labels[..., 1:], (0, 1), value=ignore_index)


def token_log_probs(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100
) -> tuple[torch.Tensor, torch.Tensor]:
    """``log softmax(logits)[labels]`` per position without materialising the full log-softmax.

    Args:
        logits: ``[N, T, V]``.
        labels: ``[N, T]`` aligned with ``logits``; ``ignore_index`` marks padding and prompt.
        ignore_index: label value that is not scored.

    Returns:
        ``(token_logps, mask)``: ``[N, T]`` float log-probabilities (0 where masked, at least float32) and the
        ``[N, T]`` bool mask of scored positions.
    """
    mask = labels != ignore_index
    index = labels.masked_fill(~mask, 0).unsqueeze(-1)
    if logits.dtype in (torch.float32, torch.float64):
        # log P(y_t) = -CE(logits_t, y_t): the fused cross-entropy kernel, whose backward is one pass,
        # where gather - logsumexp through autograd cost 1.6-2.5x as much (benchmarks/rrhf_step.py).
        flat = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), index.reshape(-1), reduction="none"
        )
        logps = -flat.view(labels.shape)
    else:
        # Half precision: upcast one row at a time, so the float32 copy never holds the whole batch.
        logps = torch.stack(
            [
                torch.log_softmax(row.float(), dim=-1).gather(-1, idx).squeeze(-1)
                for row, idx in zip(logits, index)
            ]
        )
    return logps.masked_fill(~mask, 0.0), mask


def _normalise(total: torch.Tensor, length: torch.Tensor, length_normalize: bool, length_penalty: float):
    if not length_normalize:
        return total
    # Empty sequences score 0 rather than 0/0.
    return torch.where(length > 0, total / length.clamp(min=1).to(total.dtype) ** length_penalty, 0.0)


def sequence_scores(
    logits: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int = -100,
    length_normalize: bool = True,
    length_penalty: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """RRHF candidate score ``p_i = Σ_t log π(y_{i,t}) / |y_i|^α``.

    Args:
        logits: ``[N, T, V]`` logits of all candidates.
        labels: ``[N, T]`` target ids aligned with ``logits`` (decoder-only callers apply [`shift_labels`] first).
        ignore_index: label value of prompt and padding positions.
        length_normalize: divide by the length (``True`` in RRHF); otherwise the plain sum.
        length_penalty: exponent ``α`` on the length (1.0 in the paper).

    Returns:
        ``(scores [N], token_logps [N, T], mask [N, T])``.

    Example:
    ```python
    >>> logits = torch.log(torch.tensor([[[0.5, 0.5], [0.25, 0.75]]]))
    >>> scores, _, _ = sequence_scores(logits, torch.tensor([[0, 1]]))
    >>> round(scores.item(), 4)  # (log 0.5 + log 0.75) / 2
    -0.4904

    ```
    """
    token_logps, mask = token_log_probs(logits, labels, ignore_index)
    scores = _normalise(token_logps.sum(-1), mask.sum(-1), length_normalize, length_penalty)
    return scores, token_logps, mask


def pairwise_sequence_scores(
    token_logps: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int = -100,
    length_normalize: bool = True,
    length_penalty: float = 1.0,
) -> torch.Tensor:
    """Scores restricted to the tokens after each pair's longest common prefix.

    ``out[i, j]`` is the score of candidate ``i`` computed only on its tokens after the longest common prefix of
    ``i`` and ``j`` (labels compared after dropping ignored positions, so left and right padding both work). The
    prefix tokens have the same log-probability in both candidates (same context), so they cancel in an
    unnormalised difference; excluding them also keeps length normalisation from pushing on them.

    Args:
        token_logps: ``[N, T]`` from [`token_log_probs`].
        labels: ``[N, T]`` the same labels.
        ignore_index: label value of prompt and padding positions.
        length_normalize: divide by the suffix length.
        length_penalty: exponent on the suffix length.

    Returns:
        ``[N, N]`` scores; 0 where the suffix is empty (identical candidates).
    """
    mask = labels != ignore_index
    # Stable sort moves each row's scored tokens to the front in order.
    order = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices
    ids = labels.gather(1, order)
    logps = token_logps.gather(1, order)
    valid = mask.gather(1, order)
    same = (ids[:, None, :] == ids[None, :, :]) & valid[:, None, :] & valid[None, :, :]
    prefix = same.to(torch.int32).cumprod(-1).sum(-1)  # [N, N] common-prefix length
    cumulative = F.pad(logps.cumsum(-1), (1, 0))  # [N, T + 1], cumulative[i, k] = Σ_{t<k}
    prefix_sum = cumulative.gather(1, prefix)  # row i, column j -> Σ of i's first c_ij tokens
    lengths = valid.sum(-1)
    suffix_sum = cumulative[:, -1:] - prefix_sum
    suffix_len = lengths[:, None] - prefix
    return _normalise(suffix_sum, suffix_len, length_normalize, length_penalty)


def _dense_groups(
    n: int, group_ids: torch.Tensor | None, group_size: int | None, device: torch.device
) -> tuple[torch.Tensor, int]:
    if group_ids is not None:
        if group_ids.numel() != n:
            raise ValueError(f"group_ids has {group_ids.numel()} entries but there are {n} candidates.")
        unique, dense = torch.unique(group_ids.reshape(-1), return_inverse=True)
        return dense.to(device), unique.numel()
    if group_size is not None:
        if group_size <= 0 or n % group_size:
            raise ValueError(f"group_size={group_size} does not divide the {n} candidates.")
        return torch.arange(n, device=device) // group_size, n // group_size
    # RRHF's reference implementation trains on one prompt per batch.
    return torch.zeros(n, dtype=torch.long, device=device), 1


def _flatten(t: torch.Tensor, group_size: int | None) -> tuple[torch.Tensor, int | None]:
    # A [B, K] tensor means B groups of K candidates.
    if t.dim() == 2:
        return t.reshape(-1), t.shape[1]
    return t, group_size


def _priority_codes(priority: Sequence[str | int | SourceKind]) -> list[int]:
    codes = [int(SourceKind.parse(p)) for p in priority]
    if len(set(codes)) != len(codes):
        raise ValueError(f"priority has duplicate sources: {list(priority)}")
    return codes


def outranks(
    rewards: torch.Tensor,
    group_ids: torch.Tensor,
    speedups: torch.Tensor | None = None,
    speedup_margin: float | None = None,
) -> torch.Tensor:
    """``[N, N]`` bool matrix: ``out[a, b]`` when ``b`` outranks ``a``, a pair of the ranking loss.

    ``b`` outranks ``a`` when both answer the same prompt and ``b`` has the higher reward, or, with
    ``speedup_margin``, the same reward and a speed-up more than ``speedup_margin`` times ``a``'s. A ``NaN``
    speed-up (not measured) is never compared, so such candidates are ordered by reward only.

    Args:
        rewards: ``[N]`` rewards.
        group_ids: ``[N]`` prompt of each candidate.
        speedups: ``[N]`` measured speed-ups, ``NaN`` where unknown.
        speedup_margin: the factor that tells two speed-ups apart; ``None`` compares rewards only.

    Example:
    ```python
    >>> r, g = torch.tensor([2.0, 2.0, 2.0]), torch.zeros(3, dtype=torch.long)
    >>> outranks(r, g, torch.tensor([1.5, 1.6, 3.0]), 1.10).int()  # 1.5 and 1.6 are within the margin
    tensor([[0, 0, 1],
            [0, 0, 1],
            [0, 0, 0]], dtype=torch.int32)

    ```
    """
    same = group_ids[:, None] == group_ids[None, :]
    better = rewards[:, None] < rewards[None, :]
    if speedups is not None and speedup_margin is not None:
        speedups = speedups.to(device=rewards.device, dtype=torch.float64)
        faster = speedups[None, :] > speedup_margin * speedups[:, None]  # False wherever a NaN is involved
        better = better | ((rewards[:, None] == rewards[None, :]) & faster)
    return same & better


def _as_float(rewards: torch.Tensor) -> torch.Tensor:
    rewards = rewards if rewards.is_floating_point() else rewards.float()
    if torch.isnan(rewards).any():
        raise ValueError("rewards contain NaN.")
    return rewards


def _speedups(speedups: torch.Tensor | None, n: int) -> torch.Tensor | None:
    if speedups is None:
        return None
    speedups = speedups.reshape(-1)
    if speedups.numel() != n:
        raise ValueError(f"speedups has {speedups.numel()} entries but there are {n} candidates.")
    return speedups


def _best_of(
    pairs: torch.Tensor,
    gid: torch.Tensor,
    num_groups: int,
    sources: torch.Tensor | None,
    priority: Sequence[str | int | SourceKind],
) -> torch.Tensor:
    """Per group, the row nobody outranks, by source priority and then by row."""
    n, device = gid.numel(), gid.device
    top = ~pairs.any(dim=1)
    codes = _priority_codes(priority)
    rank = torch.full((n,), len(codes), dtype=torch.long, device=device)
    if sources is not None:
        sources = sources.reshape(-1).to(device)
        for r, code in enumerate(codes):
            rank = torch.where(sources == code, r, rank)
    # Lexicographic (priority rank, row) packed in one integer so a single scatter-min picks the winner.
    key = rank * n + torch.arange(n, device=device)
    never = (len(codes) + 1) * n
    key = key.masked_fill(~top, never)
    best = torch.full((num_groups,), never, dtype=torch.long, device=device).scatter_reduce(
        0, gid, key, "amin"
    )
    return best % n


def select_best(
    rewards: torch.Tensor,
    sources: torch.Tensor | None = None,
    group_ids: torch.Tensor | None = None,
    *,
    group_size: int | None = None,
    priority: Sequence[str | int | SourceKind] = DEFAULT_PRIORITY,
    speedups: torch.Tensor | None = None,
    speedup_margin: float | None = None,
) -> torch.Tensor:
    """Index of the best candidate of each group: one that no other candidate [`outranks`].

    Without speed-ups that is a highest-reward candidate. Several candidates can qualify (equal rewards, or
    speed-ups within the margin of each other): the source that comes first in ``priority`` wins (sources not
    listed come last), then the lowest row.

    Args:
        rewards: ``[N]`` (or ``[B, K]``) rewards.
        sources: ``[N]`` [`SourceKind`] codes; ``None`` breaks ties by row only.
        group_ids: ``[N]`` prompt id of each row. Without it and ``group_size``, all rows form one group.
        group_size: fixed number of consecutive rows per prompt.
        priority: source order used to break ties.
        speedups: ``[N]`` measured speed-ups (``NaN`` where unknown), for speed-aware ranking.
        speedup_margin: see [`outranks`].

    Returns:
        ``[G]`` long tensor of row indices, groups in ascending id order.

    Example:
    ```python
    >>> select_best(torch.tensor([1.3, 2.0, 2.0, 0.0]), torch.tensor([0, 2, 1, 0]), group_size=4)
    tensor([2])
    >>> # A random sample 2.4x faster than the target (1.2x) outranks it:
    >>> select_best(torch.tensor([2.0, 2.0]), torch.tensor([2, 0]), speedups=torch.tensor([1.2, 2.4]),
    ...             speedup_margin=1.1)
    tensor([1])

    ```
    """
    rewards, group_size = _flatten(rewards, group_size)
    rewards = _as_float(rewards)
    gid, num_groups = _dense_groups(rewards.numel(), group_ids, group_size, rewards.device)
    pairs = outranks(rewards, gid, _speedups(speedups, rewards.numel()), speedup_margin)
    return _best_of(pairs, gid, num_groups, sources, priority)


def count_normalisers(
    labels: torch.Tensor,
    rewards: torch.Tensor,
    sources: torch.Tensor | None = None,
    group_ids: torch.Tensor | None = None,
    *,
    group_size: int | None = None,
    options: RRHFLossOptions | None = None,
    speedups: torch.Tensor | None = None,
) -> tuple[int, int]:
    """The loss's normalisers of one micro-batch: sum each over the micro-batches of an accumulated batch.

    Returns:
        ``(best_tokens, groups_with_signal)``: tokens of the best candidates that the tuning term trains on
        (``num_items_in_batch``), and the groups that form at least one ranked pair (``num_groups_in_batch``).
    """
    plan = _plan(labels, rewards, sources, group_ids, group_size, options or RRHFLossOptions(), speedups)
    return int(plan.best_tokens), int(plan.groups_with_signal)


def groups_with_loss_terms(
    labels: torch.Tensor,
    rewards: torch.Tensor,
    sources: torch.Tensor | None = None,
    group_ids: torch.Tensor | None = None,
    *,
    group_size: int | None = None,
    options: RRHFLossOptions | None = None,
    speedups: torch.Tensor | None = None,
) -> torch.Tensor:
    """Which groups give the loss a term: a ranked pair, or a best candidate that the tuning term imitates
    (``[num_groups]`` bool, in group order).

    A group with neither adds nothing to the update: with unit-test rewards (``tuning_min_reward`` R3), a group
    whose candidates all fail and tie. A group whose candidates all pass and tie forms no pair but still has a
    program to imitate. Dynamic sampling replaces the groups without a term.

    Example:
    ```python
    >>> labels = torch.ones(6, 3, dtype=torch.long)
    >>> rewards = torch.tensor([1.3, 1.3, 1.0, 1.0, 2.0, 0.0])  # passing tie, failing tie, a pair
    >>> options = RRHFLossOptions(tuning_min_reward=1.3)
    >>> groups_with_loss_terms(labels, rewards, group_ids=torch.tensor([0, 0, 1, 1, 2, 2]), options=options)
    tensor([ True, False,  True])

    ```
    """
    plan = _plan(labels, rewards, sources, group_ids, group_size, options or RRHFLossOptions(), speedups)
    return plan.signal | plan.tuned


@dataclass
class _Plan:
    """Which pairs are ranked and which candidates are imitated, decided from rewards and speed-ups alone."""

    rewards: torch.Tensor
    gid: torch.Tensor
    num_groups: int
    pairs: torch.Tensor  # [N, N], pairs[a, b]: b outranks a
    best: torch.Tensor  # [G]
    tuned: torch.Tensor  # [G] bool: the group has a tuning term
    best_tokens: torch.Tensor
    signal: torch.Tensor  # [G] bool: the group forms a ranked pair

    @property
    def groups_with_signal(self) -> torch.Tensor:
        return self.signal.sum()


def _plan(labels, rewards, sources, group_ids, group_size, o: RRHFLossOptions, speedups) -> _Plan:
    rewards, group_size = _flatten(rewards, group_size)
    rewards = _as_float(rewards).to(labels.device)
    gid, num_groups = _dense_groups(rewards.numel(), group_ids, group_size, labels.device)
    pairs = outranks(rewards, gid, _speedups(speedups, rewards.numel()), o.speedup_margin)
    best = _best_of(pairs, gid, num_groups, sources, o.priority)
    tuned = torch.ones(num_groups, dtype=torch.bool, device=labels.device)
    if o.tuning_min_reward is not None:
        tuned = rewards[best] >= o.tuning_min_reward
    best_tokens = ((labels[best] != o.ignore_index) & tuned[:, None]).sum()
    signal = torch.zeros(num_groups, dtype=torch.bool, device=labels.device)
    signal = signal.index_put((gid,), pairs.any(dim=1), accumulate=True)
    return _Plan(rewards, gid, num_groups, pairs, best, tuned, best_tokens, signal)


def _at_least_one(count: int | torch.Tensor) -> int | torch.Tensor:
    # A batch with nothing to rank (or to imitate) gives a zero term, not 0/0.
    return count.clamp(min=1) if torch.is_tensor(count) else max(count, 1)


def _pair_terms(
    scores: torch.Tensor, pairs: torch.Tensor, margin: float, pairwise: bool
) -> tuple[torch.Tensor, ...]:
    if pairwise:
        s_worse, s_better = scores, scores.T  # [a, b]: a's score vs b, b's score vs a
    else:
        s_worse, s_better = scores[:, None], scores[None, :]
    gap = s_worse - s_better + margin
    total = torch.relu(gap).masked_fill(~pairs, 0.0).sum()
    return total, pairs.sum(), (pairs & (gap > 0)).sum(), (pairs & (s_better > s_worse)).sum()


def rank_loss(
    scores: torch.Tensor,
    rewards: torch.Tensor,
    group_ids: torch.Tensor | None = None,
    *,
    group_size: int | None = None,
    margin: float = 0.0,
    num_groups_in_batch: int | torch.Tensor | None = None,
    pairwise: bool = False,
    speedups: torch.Tensor | None = None,
    speedup_margin: float | None = None,
) -> torch.Tensor:
    """RRHF ranking loss ``Σ_{b outranks a} max(0, p_a − p_b + margin)``, summed per prompt, averaged over the
    prompts that form at least one pair.

    Pairs only form inside a prompt, between different rewards or (with ``speedup_margin``) equal rewards and
    speed-ups that differ by more than the margin: see [`outranks`].

    Args:
        scores: ``[N]`` or ``[B, K]`` scores, or with ``pairwise=True`` an ``[N, N]`` matrix where
            ``scores[a, b]`` is ``a``'s score when compared with ``b`` (see [`pairwise_sequence_scores`]).
        rewards: ``[N]`` or ``[B, K]`` rewards.
        group_ids: ``[N]`` prompt id of each row.
        group_size: fixed number of consecutive rows per prompt.
        margin: hinge margin (0 in the paper).
        num_groups_in_batch: prompts with at least one pair in the whole accumulated batch; defaults to this
            batch's.
        pairwise: interpret ``scores`` as the pairwise matrix.
        speedups: ``[N]`` measured speed-ups (``NaN`` where unknown).
        speedup_margin: see [`outranks`].

    Example:
    ```python
    >>> rank_loss(torch.tensor([[-1.0, -2.0, -0.5]]), torch.tensor([[0.0, 1.0, 2.0]]))  # 1 + 0 + 0
    tensor(1.)

    ```
    """
    rewards, group_size = _flatten(rewards, group_size)
    if not pairwise:
        scores, group_size = _flatten(scores, group_size)
    rewards = _as_float(rewards).to(scores.device)
    gid, _ = _dense_groups(rewards.numel(), group_ids, group_size, scores.device)
    pairs = outranks(rewards, gid, _speedups(speedups, rewards.numel()), speedup_margin)
    total = _pair_terms(scores, pairs, margin, pairwise)[0]
    if num_groups_in_batch is None:
        num_groups_in_batch = gid[pairs.any(dim=1)].unique().numel()
    return total / _at_least_one(num_groups_in_batch)


def tuning_loss(
    token_logps: torch.Tensor,
    labels: torch.Tensor,
    rewards: torch.Tensor,
    sources: torch.Tensor | None = None,
    group_ids: torch.Tensor | None = None,
    *,
    group_size: int | None = None,
    options: RRHFLossOptions | None = None,
    speedups: torch.Tensor | None = None,
    num_items_in_batch: int | torch.Tensor | None = None,
) -> torch.Tensor:
    """Negative log-likelihood of each prompt's best candidate ([`select_best`]), per token.

    The summed NLL is divided by ``num_items_in_batch`` (best-candidate tokens of the whole accumulated batch, see
    [`count_normalisers`]) when given, else by this batch's best-candidate token count. Groups whose best
    candidate's reward is below ``options.tuning_min_reward`` contribute nothing.

    Args:
        token_logps: ``[N, T]`` from [`token_log_probs`].
        labels: ``[N, T]`` the same labels (for the mask).
        rewards, sources, group_ids, group_size: as in [`select_best`].
        options: the loss's settings (priority, speed-up margin, ``tuning_min_reward``, ``ignore_index``).
        speedups: ``[N]`` measured speed-ups, for speed-aware ranking.
        num_items_in_batch: token normaliser for gradient accumulation.
    """
    plan = _plan(labels, rewards, sources, group_ids, group_size, options or RRHFLossOptions(), speedups)
    return _tuning(token_logps, labels, plan, options or RRHFLossOptions(), num_items_in_batch)


def _tuning(token_logps, labels, plan: _Plan, o: RRHFLossOptions, num_items_in_batch) -> torch.Tensor:
    mask = (labels[plan.best] != o.ignore_index) & plan.tuned[:, None]
    nll = -(token_logps[plan.best] * mask).sum()
    denom = mask.sum().clamp(min=1) if num_items_in_batch is None else _at_least_one(num_items_in_batch)
    return nll / denom


def rrhf_loss_from_token_logps(
    token_logps: torch.Tensor,
    labels: torch.Tensor,
    rewards: torch.Tensor,
    sources: torch.Tensor | None = None,
    group_ids: torch.Tensor | None = None,
    *,
    group_size: int | None = None,
    options: RRHFLossOptions | None = None,
    speedups: torch.Tensor | None = None,
    num_items_in_batch: int | torch.Tensor | None = None,
    num_groups_in_batch: int | torch.Tensor | None = None,
) -> RRHFOutput:
    """[`rrhf_loss`] from precomputed ``[N, T]`` token log-probabilities (e.g. computed in chunks)."""
    o = options or RRHFLossOptions()
    plan = _plan(labels, rewards, sources, group_ids, group_size, o, speedups)
    mask = labels != o.ignore_index
    scores = _normalise(token_logps.sum(-1), mask.sum(-1), o.length_normalize, o.length_penalty)
    if o.rank_on_differing_tokens:
        rank_scores = pairwise_sequence_scores(
            token_logps, labels, o.ignore_index, o.length_normalize, o.length_penalty
        )
    else:
        rank_scores = scores
    rank_total, num_pairs, num_active, num_correct = _pair_terms(
        rank_scores, plan.pairs, o.rank_margin, o.rank_on_differing_tokens
    )
    groups = plan.groups_with_signal if num_groups_in_batch is None else num_groups_in_batch
    l_rank = rank_total / _at_least_one(groups)
    l_tuning = _tuning(token_logps, labels, plan, o, num_items_in_batch)
    return RRHFOutput(
        loss=o.rank_weight * l_rank + l_tuning,
        rank_loss=l_rank,
        tuning_loss=l_tuning,
        best_index=plan.best,
        scores=scores.detach(),
        group_ids=plan.gid,
        num_pairs=num_pairs,
        num_active_pairs=num_active,
        num_correct_pairs=num_correct,
        num_best_tokens=plan.best_tokens,
        num_groups_with_signal=plan.groups_with_signal,
    )


def rrhf_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    rewards: torch.Tensor,
    sources: torch.Tensor | None = None,
    group_ids: torch.Tensor | None = None,
    *,
    group_size: int | None = None,
    options: RRHFLossOptions | None = None,
    speedups: torch.Tensor | None = None,
    num_items_in_batch: int | torch.Tensor | None = None,
    num_groups_in_batch: int | torch.Tensor | None = None,
) -> RRHFOutput:
    """PerfRL's RRHF objective ``L = a · L_rank + L_tuning`` over a batch of candidate groups.

    Args:
        logits: ``[N, T, V]`` logits of all candidates from one forward pass.
        labels: ``[N, T]`` aligned with ``logits`` (decoder-only: ``shift_labels(batch["labels"])``).
        rewards: ``[N]`` (or ``[B, K]``) rewards.
        sources: ``[N]`` [`SourceKind`] codes used to break ties for the best candidate.
        group_ids: ``[N]`` prompt id of each row; or give ``group_size``; neither means one prompt.
        group_size: fixed number of consecutive rows per prompt.
        options: The loss's settings, [`RRHFLossOptions`] (default: the paper's loss).
        speedups: ``[N]`` measured speed-ups (``NaN`` where unknown), used with ``options.speedup_margin``.
        num_items_in_batch: best-candidate tokens in the whole accumulated batch ([`count_normalisers`]).
        num_groups_in_batch: prompts with at least one ranked pair in the whole accumulated batch
            ([`count_normalisers`]).

    Returns:
        [`RRHFOutput`].

    Example:
    ```python
    >>> logits = torch.zeros(2, 3, 4, requires_grad=True)
    >>> labels = torch.tensor([[1, 2, -100], [1, 3, 3]])
    >>> out = rrhf_loss(logits, labels, torch.tensor([0.0, 2.0]), torch.tensor([0, 2]))
    >>> out.best_index, round(out.loss.item(), 4)  # uniform model: equal scores, NLL = log 4
    (tensor([1]), 1.3863)

    ```
    """
    options = options or RRHFLossOptions()
    token_logps, _ = token_log_probs(logits, labels, options.ignore_index)
    return rrhf_loss_from_token_logps(
        token_logps,
        labels,
        rewards,
        sources,
        group_ids,
        group_size=group_size,
        options=options,
        speedups=speedups,
        num_items_in_batch=num_items_in_batch,
        num_groups_in_batch=num_groups_in_batch,
    )
