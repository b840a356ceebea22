"""The reward tiers and the defaults every layer shares: the speed-up margin and the tiers' values."""

from __future__ import annotations

import enum
import itertools
from collections.abc import Sequence

# PIE's margin: a program is "faster" only when baseline_time / candidate_time >= 1.10 (Shypula et al.,
# ICLR 2024). The executor, the reward, the metric and the CLI all read it from here.
DEFAULT_MARGIN = 1.10

# The paper's rewards of R1..R4 (PerfRL, arXiv 2312.05657, Sec. III-C).
DEFAULT_TIER_REWARDS = (0.0, 1.0, 1.3, 2.0)


class Tier(enum.IntEnum):
    """PerfRL's four outcomes of judging a program, ordered from worst to best.

    ``R1`` does not compile, ``R2`` compiles but fails a test (error, timeout, memory, wrong output),
    ``R3`` passes every test, ``R4`` passes and is faster than its baseline by the margin, significantly.
    ``str(tier)`` and ``tier.name`` are ``"R1"``..``"R4"``; ``int(tier)`` is 1..4.

    Example:
        ```python
        >>> Tier.R4 > Tier.R3, str(Tier.R2), Tier.from_name("R3") is Tier.R3
        (True, 'R2', True)
        ```
    """

    R1 = 1
    R2 = 2
    R3 = 3
    R4 = 4

    def __str__(self) -> str:
        return self.name

    @property
    def compiles(self) -> bool:
        return self >= Tier.R2

    @property
    def passes(self) -> bool:
        return self >= Tier.R3

    @classmethod
    def from_name(cls, name: str) -> Tier:
        """The tier called ``name`` ("R1".."R4")."""
        try:
            return cls[name]
        except KeyError:
            raise ValueError(f"unknown tier {name!r}: expected one of {[t.name for t in cls]}") from None


def validate_tier_rewards(values: Sequence[float], where: str = "values") -> tuple[float, ...]:
    """Four rewards for R1..R4, non-decreasing, as floats; the error names ``where``.

    Example:
        ```python
        >>> validate_tier_rewards([0, 1, 1.3, 2])
        (0.0, 1.0, 1.3, 2.0)
        ```
    """
    try:
        values = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(f"{where} must be four numbers, the rewards of R1..R4, got {values!r}") from None
    if len(values) != len(Tier):
        raise ValueError(f"{where} must give the four tiers R1..R4, got {len(values)} values: {list(values)}")
    if any(b < a for a, b in itertools.pairwise(values)):
        raise ValueError(f"{where} must be non-decreasing from R1 to R4, got {list(values)}")
    return values
