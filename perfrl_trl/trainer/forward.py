"""The RRHF update's forward pass: every candidate's token log-probabilities, without the padding's work.

A batch holds k candidates for each of its prompts, padded to the longest of them all. Run as one tensor, the
model pays for every copy of a prompt (the collator repeats it on each candidate's row) and for every padding
position: one candidate that runs to the token limit pads every other to that length. Here a seq2seq model's
encoder runs once per prompt, and the rows run in a few chunks of similar length, each cut to its own longest
row. The log-probabilities and their gradients are those of the one padded pass (padding is masked out of every
position that is scored), so the loss is unchanged; only the work is less.
"""

from __future__ import annotations

import torch
from transformers import PreTrainedModel

from ..loss import shift_labels, token_log_probs

__all__ = ["candidate_token_logps", "encode_each_prompt_once", "length_chunks"]


def encode_each_prompt_once(model: PreTrainedModel, inputs: dict, group_ids: torch.Tensor) -> dict:
    """The encoder-decoder batch with each prompt encoded once, for all of its candidates.

    Encoding each prompt once and handing every candidate its prompt's encoding gives the same loss and, since
    the gradient of a shared encoding sums over its candidates, the same gradients (with dropout off, as in the
    bundled model: with it, the copies drew different masks), for 1/k of the encoder's work with k candidates
    per prompt.

    Args:
        model: The unwrapped seq2seq model.
        inputs: ``input_ids`` and ``attention_mask``, ``[N, P]``, one row per candidate.
        group_ids: ``[N]``, the prompt each row belongs to.

    Returns:
        ``inputs`` with ``input_ids`` replaced by ``encoder_outputs`` (``[N, P, H]``, rows of the same prompt
        shared).
    """
    groups, row_group = torch.unique(group_ids, return_inverse=True)
    rows = torch.arange(len(group_ids), device=group_ids.device)
    first = torch.full((len(groups),), len(group_ids), device=group_ids.device)
    first = first.scatter_reduce(0, row_group, rows, reduce="amin")
    attention_mask = inputs["attention_mask"]
    encoded = model.get_encoder()(input_ids=inputs["input_ids"][first], attention_mask=attention_mask[first])
    rest = {k: v for k, v in inputs.items() if k != "input_ids"}
    return {**rest, "encoder_outputs": (encoded.last_hidden_state[row_group],)}


def length_chunks(lengths: list[int], max_chunks: int) -> list[list[int]]:
    """Rows grouped into at most `max_chunks` chunks of similar length, with the least padded area.

    The rows are sorted by length and cut where the sum over chunks of (rows x longest row) is smallest (an
    exact dynamic programme; batches hold tens of rows).

    Args:
        lengths: Each row's length.
        max_chunks: The most chunks; each costs a forward pass of its own.

    Returns:
        Row indices per chunk, shortest rows first.

    Example:
    ```python
    >>> length_chunks([100, 10, 12, 98, 11], max_chunks=2)
    [[1, 4, 2], [3, 0]]

    ```
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    n = len(order)
    if n == 0:
        return []
    sorted_lengths = [lengths[i] for i in order]
    # cost[c][j]: the least area of the first j sorted rows in c chunks; cut[c][j]: where the last one starts.
    inf = float("inf")
    cost = [[inf] * (n + 1) for _ in range(max_chunks + 1)]
    cut = [[0] * (n + 1) for _ in range(max_chunks + 1)]
    cost[0][0] = 0
    for c in range(1, max_chunks + 1):
        for j in range(1, n + 1):
            for i in range(j):
                area = cost[c - 1][i] + (j - i) * sorted_lengths[j - 1]
                if area < cost[c][j]:
                    cost[c][j], cut[c][j] = area, i
    best = min(range(1, max_chunks + 1), key=lambda c: (cost[c][n], c))
    chunks, j = [], n
    for c in range(best, 0, -1):
        i = cut[c][j]
        chunks.append(order[i:j])
        j = i
    return chunks[::-1]


def candidate_token_logps(
    model,
    inputs: dict,
    labels: torch.Tensor,
    group_ids: torch.Tensor,
    *,
    is_encoder_decoder: bool,
    max_chunks: int = 4,
    single_pass: bool = False,
    ignore_index: int = -100,
) -> torch.Tensor:
    """``[N, T]`` log-probabilities of every candidate's tokens (0 where not scored), aligned with the loss labels.

    Args:
        model: The model as the trainer calls it.
        inputs: The collated batch without its RRHF columns: ``input_ids``, ``attention_mask`` (and
            ``position_ids`` for left-padded decoder-only batches).
        labels: ``[N, T]`` as collated (decoder-only: not shifted).
        group_ids: ``[N]``, the prompt of each row.
        is_encoder_decoder: The batch's layout.
        max_chunks: The most chunks the rows run in; 1 is the single padded pass.
        single_pass: One padded pass through `model` as it is, with nothing shared: what a wrapped model (DDP)
            needs, whose gradient hooks expect one forward of the whole model per backward.
        ignore_index: Label of unscored positions.
    """
    if single_pass:
        max_chunks = 1
    if is_encoder_decoder:
        decoder_input_ids = getattr(model, "module", model).prepare_decoder_input_ids_from_labels(
            labels=labels
        )
        if not single_pass:
            inputs = encode_each_prompt_once(model, inputs, group_ids)
        loss_labels = labels
        scored = labels != ignore_index
        left = False
    else:
        decoder_input_ids = None
        loss_labels = shift_labels(labels, ignore_index)
        scored = inputs["attention_mask"].bool()
        left = "position_ids" in inputs
    width = labels.shape[1]
    columns = torch.arange(width, device=labels.device)
    # A row's length: up to its last scored (right padding) or from its first attended (left) position.
    if left:
        lengths = (width - torch.where(scored, columns, width).min(dim=1).values).tolist()
    else:
        lengths = (torch.where(scored, columns + 1, 0).max(dim=1).values).tolist()
    chunks = length_chunks(lengths, max_chunks) if max_chunks > 1 else [list(range(len(lengths)))]
    parts = []
    for rows in chunks:
        index = torch.tensor(rows, device=labels.device)
        length = max(1, max(lengths[i] for i in rows))
        span = slice(width - length, width) if left else slice(0, length)
        if is_encoder_decoder:  # the prompt side whole, the decoder side cut to the chunk's length
            chunk = {k: v[index] for k, v in inputs.items() if k != "encoder_outputs"}
            if "encoder_outputs" in inputs:
                chunk["encoder_outputs"] = (inputs["encoder_outputs"][0][index],)
            chunk["decoder_input_ids"] = decoder_input_ids[index, span]
        else:
            chunk = {k: v[index, span] for k, v in inputs.items()}
        logps, _ = token_log_probs(model(**chunk).logits, loss_labels[index, span], ignore_index)
        pad = (width - length, 0) if left else (0, width - length)
        parts.append(torch.nn.functional.pad(logps.float(), pad))
    # Back to the batch's row order: the inverse of the order the chunks put the rows in.
    order = torch.tensor([r for rows in chunks for r in rows], device=labels.device)
    return torch.cat(parts)[order.argsort()]
