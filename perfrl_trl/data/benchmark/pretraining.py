"""The bundled checkpoint's training problems, kept provably apart from every evaluation problem.

The recipes evaluate on `build_benchmark(n_per_family=N, seed=EVAL_SEED)` splits, whose membership shifts with
N. The checkpoint therefore trains on problems of another seed, and any of them whose slow program also occurs
among the first `EVAL_RESERVE` problems per family of the evaluation seed (every split, for any N up to that)
is dropped. The held-out families are never trained on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from .build import DEFAULT_HELDOUT_FAMILIES, generate_problems

PRETRAIN_SEED = 1
EVAL_SEED = 0
EVAL_RESERVE = 200


def program_digest(code: str) -> str:
    """A short content hash of a program (sha256, 16 hex digits), used in the checkpoint's training manifest."""
    return hashlib.sha256(code.encode()).hexdigest()[:16]


def pretraining_problems(
    n_per_family: int,
    seed: int = PRETRAIN_SEED,
    eval_seed: int = EVAL_SEED,
    eval_reserve: int = EVAL_RESERVE,
    heldout_families: Iterable[str] = DEFAULT_HELDOUT_FAMILIES,
    families: Iterable[str] | None = None,
) -> tuple[list[dict], int]:
    """Training problems for the bundled checkpoint, none of which any evaluation split can contain.

    Args:
        n_per_family: Problems generated per training family (before the exclusion).
        seed: Generation seed of the training problems; must differ from `eval_seed`.
        eval_seed: The seed the recipes evaluate on.
        eval_reserve: Problems per family of `eval_seed` excluded (covers `build_benchmark(n_per_family<=it)`).
        heldout_families: Families never trained on (they make up `test_ood`).
        families: Restrict to these families (default: all but the held-out ones).

    Returns:
        `(problems, n_excluded)`: the problem dicts of [`generate_problems`], and how many were dropped because
        their slow program is also an evaluation problem's.

    Example:
        ```python
        >>> problems, dropped = pretraining_problems(2, families=["sum_formula"])
        >>> len(problems) + dropped
        2
        ```
    """
    if seed == eval_seed:
        raise ValueError(f"pretraining seed must differ from eval_seed ({eval_seed}), got {seed}")
    heldout = set(heldout_families)
    from ._registry import FAMILIES

    names = [f for f in (families or FAMILIES) if f not in heldout]
    reserved = {p["input_code"] for p in generate_problems(eval_reserve, eval_seed, names, outputs=False)}
    problems = generate_problems(n_per_family, seed, names)
    kept = [p for p in problems if p["input_code"] not in reserved]
    return kept, len(problems) - len(kept)
