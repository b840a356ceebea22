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

Batching conventions. All candidates of a batch are flattened to ``N`` rows; ``group_ids`` (or a fixed
``group_size``) says which rows share a prompt. ``L_rank`` sums over the pairs of a prompt and is averaged over
prompts; ``L_tuning`` is the mean negative log-likelihood per best-candidate token. Both normalisers can be given for
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
    "count_best_tokens",
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

    @classmethod
    def parse(cls, value: str | int | SourceKind) -> SourceKind:
        """Accepts ``"random"``/``"greedy"``/``"target"`` (any case), an integer code or a member."""
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
    ignore_index: int = -100

    def __post_init__(self):
        object.__setattr__(self, "priority", tuple(self.priority))  # frozen, hashable, and a list given is copied


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
        num_best_tokens: tokens of the best candidates in this batch.
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


def select_best(
    rewards: torch.Tensor,
    sources: torch.Tensor | None = None,
    group_ids: torch.Tensor | None = None,
    *,
    group_size: int | None = None,
    priority: Sequence[str | int | SourceKind] = DEFAULT_PRIORITY,
) -> torch.Tensor:
    """Index of the highest-reward candidate of each group.

    Ties go to the source that comes first in ``priority`` (sources not listed come last), then to the lowest row.

    Args:
        rewards: ``[N]`` (or ``[B, K]``) rewards.
        sources: ``[N]`` [`SourceKind`] codes; ``None`` breaks ties by row only.
        group_ids: ``[N]`` prompt id of each row. Without it and ``group_size``, all rows form one group.
        group_size: fixed number of consecutive rows per prompt.
        priority: source order used to break reward ties.

    Returns:
        ``[G]`` long tensor of row indices, groups in ascending id order.

    Example:
    ```python
    >>> select_best(torch.tensor([1.3, 2.0, 2.0, 0.0]), torch.tensor([0, 2, 1, 0]), group_size=4)
    tensor([2])

    ```
    """
    rewards, group_size = _flatten(rewards, group_size)
    rewards = rewards.float() if not rewards.is_floating_point() else rewards
    if torch.isnan(rewards).any():
        raise ValueError("rewards contain NaN.")
    n, device = rewards.numel(), rewards.device
    gid, num_groups = _dense_groups(n, group_ids, group_size, device)
    group_max = torch.full((num_groups,), -torch.inf, dtype=rewards.dtype, device=device)
    group_max = group_max.scatter_reduce(0, gid, rewards, "amax")
    is_max = rewards == group_max[gid]

    codes = _priority_codes(priority)
    rank = torch.full((n,), len(codes), dtype=torch.long, device=device)
    if sources is not None:
        sources = sources.reshape(-1).to(device)
        for r, code in enumerate(codes):
            rank = torch.where(sources == code, r, rank)
    # Lexicographic (priority rank, row) packed in one integer so a single scatter-min picks the winner.
    key = rank * n + torch.arange(n, device=device)
    never = (len(codes) + 1) * n
    key = key.masked_fill(~is_max, never)
    best = torch.full((num_groups,), never, dtype=torch.long, device=device).scatter_reduce(
        0, gid, key, "amin"
    )
    return best % n


def count_best_tokens(
    labels: torch.Tensor,
    rewards: torch.Tensor,
    sources: torch.Tensor | None = None,
    group_ids: torch.Tensor | None = None,
    *,
    group_size: int | None = None,
    priority: Sequence[str | int | SourceKind] = DEFAULT_PRIORITY,
    ignore_index: int = -100,
) -> int:
    """Tokens of the best candidates: sum this over the micro-batches to get ``num_items_in_batch``."""
    best = select_best(rewards, sources, group_ids, group_size=group_size, priority=priority)
    return int((labels[best] != ignore_index).sum())


def _pair_terms(
    scores: torch.Tensor, rewards: torch.Tensor, gid: torch.Tensor, margin: float, pairwise: bool
) -> tuple[torch.Tensor, ...]:
    if pairwise:
        s_worse, s_better = scores, scores.T  # [a, b]: a's score vs b, b's score vs a
    else:
        s_worse, s_better = scores[:, None], scores[None, :]
    # pair[a, b]: a and b answer the same prompt and a is strictly worse.
    pair = (gid[:, None] == gid[None, :]) & (rewards[:, None] < rewards[None, :])
    gap = s_worse - s_better + margin
    total = torch.relu(gap).masked_fill(~pair, 0.0).sum()
    return total, pair.sum(), (pair & (gap > 0)).sum(), (pair & (s_better > s_worse)).sum()


def rank_loss(
    scores: torch.Tensor,
    rewards: torch.Tensor,
    group_ids: torch.Tensor | None = None,
    *,
    group_size: int | None = None,
    margin: float = 0.0,
    num_groups_in_batch: int | torch.Tensor | None = None,
    pairwise: bool = False,
) -> torch.Tensor:
    """RRHF ranking loss ``Σ_{r_a < r_b} max(0, p_a − p_b + margin)``, summed per prompt, averaged over prompts.

    Pairs only form inside a prompt and only between different rewards (ties contribute nothing).

    Args:
        scores: ``[N]`` or ``[B, K]`` scores, or with ``pairwise=True`` an ``[N, N]`` matrix where
            ``scores[a, b]`` is ``a``'s score when compared with ``b`` (see [`pairwise_sequence_scores`]).
        rewards: ``[N]`` or ``[B, K]`` rewards.
        group_ids: ``[N]`` prompt id of each row.
        group_size: fixed number of consecutive rows per prompt.
        margin: hinge margin (0 in the paper).
        num_groups_in_batch: number of prompts in the whole accumulated batch; defaults to this batch's.
        pairwise: interpret ``scores`` as the pairwise matrix.

    Example:
    ```python
    >>> rank_loss(torch.tensor([[-1.0, -2.0, -0.5]]), torch.tensor([[0.0, 1.0, 2.0]]))  # 1 + 0 + 0
    tensor(1.)

    ```
    """
    rewards, group_size = _flatten(rewards, group_size)
    if not pairwise:
        scores, group_size = _flatten(scores, group_size)
    gid, num_groups = _dense_groups(rewards.numel(), group_ids, group_size, rewards.device)
    total = _pair_terms(scores, rewards.to(scores.device), gid.to(scores.device), margin, pairwise)[0]
    return total / (num_groups if num_groups_in_batch is None else num_groups_in_batch)


def tuning_loss(
    token_logps: torch.Tensor,
    labels: torch.Tensor,
    rewards: torch.Tensor,
    sources: torch.Tensor | None = None,
    group_ids: torch.Tensor | None = None,
    *,
    group_size: int | None = None,
    priority: Sequence[str | int | SourceKind] = DEFAULT_PRIORITY,
    num_items_in_batch: int | torch.Tensor | None = None,
    best_index: torch.Tensor | None = None,
    ignore_index: int = -100,
) -> torch.Tensor:
    """Negative log-likelihood of each prompt's best candidate, per token.

    The summed NLL is divided by ``num_items_in_batch`` (best-candidate tokens of the whole accumulated batch, see
    [`count_best_tokens`]) when given, else by this batch's best-candidate token count.

    Args:
        token_logps: ``[N, T]`` from [`token_log_probs`].
        labels: ``[N, T]`` the same labels (for the mask).
        rewards, sources, group_ids, group_size, priority: as in [`select_best`].
        num_items_in_batch: token normaliser for gradient accumulation.
        best_index: precomputed [`select_best`] result.
        ignore_index: label value of prompt and padding positions.
    """
    if best_index is None:
        best_index = select_best(rewards, sources, group_ids, group_size=group_size, priority=priority)
    mask = labels[best_index] != ignore_index
    nll = -(token_logps[best_index] * mask).sum()
    denom = mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch
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
    num_items_in_batch: int | torch.Tensor | None = None,
    num_groups_in_batch: int | torch.Tensor | None = None,
) -> RRHFOutput:
    """[`rrhf_loss`] from precomputed ``[N, T]`` token log-probabilities (e.g. computed in chunks)."""
    o = options or RRHFLossOptions()
    rewards, group_size = _flatten(rewards, group_size)
    rewards = rewards.to(token_logps.device)
    mask = labels != o.ignore_index
    gid, num_groups = _dense_groups(rewards.numel(), group_ids, group_size, token_logps.device)
    scores = _normalise(token_logps.sum(-1), mask.sum(-1), o.length_normalize, o.length_penalty)
    if o.rank_on_differing_tokens:
        rank_scores = pairwise_sequence_scores(
            token_logps, labels, o.ignore_index, o.length_normalize, o.length_penalty
        )
    else:
        rank_scores = scores
    rank_total, num_pairs, num_active, num_correct = _pair_terms(
        rank_scores, rewards, gid, o.rank_margin, o.rank_on_differing_tokens
    )
    l_rank = rank_total / (num_groups if num_groups_in_batch is None else num_groups_in_batch)

    best = select_best(rewards, sources, gid, priority=o.priority)
    l_tuning = tuning_loss(
        token_logps,
        labels,
        rewards,
        num_items_in_batch=num_items_in_batch,
        best_index=best,
        ignore_index=o.ignore_index,
    )
    return RRHFOutput(
        loss=o.rank_weight * l_rank + l_tuning,
        rank_loss=l_rank,
        tuning_loss=l_tuning,
        best_index=best,
        scores=scores.detach(),
        group_ids=gid,
        num_pairs=num_pairs,
        num_active_pairs=num_active,
        num_correct_pairs=num_correct,
        num_best_tokens=mask[best].sum(),
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
        num_items_in_batch: best-candidate tokens in the whole accumulated batch ([`count_best_tokens`]).
        num_groups_in_batch: prompts in the whole accumulated batch.

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
        num_items_in_batch=num_items_in_batch,
        num_groups_in_batch=num_groups_in_batch,
    )
