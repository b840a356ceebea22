"""The bundled optimisation benchmark: deterministic Python optimisation problems with stdin/stdout tests.

Each registered family (see :data:`FAMILIES`, 43 of them in 7 categories) is one real optimisation pattern
(a quadratic loop that becomes a hash lookup, ``s = s + piece`` that becomes ``join``, trial division that
becomes a sieve, ``list.pop(0)`` that becomes a deque, ...). From a seed it draws the data sizes, the variable
names and the coding style (script or ``main()``, ``input()`` / ``sys.stdin.readline`` / token iterator, output
idiom, indentation) and yields:

- ``input_code``: the slow program;
- ``best_code``: the best-known fast program;
- ``target_code``: the supervised target. For about a third of the problems it is only partly optimised
  (``target_kind="partial"``) or barely faster (``"marginal"``), so that RL has room to beat imitation;
- ``tests``: 2-4 ``{"input", "output"}`` pairs sized so that the slow program takes tens of milliseconds;
  expected outputs are produced by running ``best_code``.

Generation needs no download and no subprocess; timing-based validation through the sandboxed executor is
opt-in (``build_benchmark(validate=True)``).

Example:
    ```python
    >>> from perfrl_trl.data.benchmark import build_benchmark
    >>> ds = build_benchmark(n_per_family=5, seed=0)
    >>> sorted(ds)
    ['test', 'test_ood', 'train', 'validation']
    >>> ds["train"][0]["problem_id"].startswith("bench/")
    True
    ```
"""

from . import (  # noqa: F401  (importing a module registers its families)
    families_algo,
    families_ds,
    families_io,
    families_loops,
    families_math,
    families_search,
    families_strings,
)
from ._registry import FAMILIES, Family, register
from .build import (
    DEFAULT_HELDOUT_FAMILIES,
    DEFAULT_PREFIX,
    TARGET_KINDS,
    build_benchmark,
    generate_problems,
    run_reference,
    split_problems,
    to_dataset,
    validate_problems,
)

__all__ = [
    "DEFAULT_HELDOUT_FAMILIES",
    "DEFAULT_PREFIX",
    "FAMILIES",
    "TARGET_KINDS",
    "Family",
    "build_benchmark",
    "generate_problems",
    "register",
    "run_reference",
    "split_problems",
    "to_dataset",
    "validate_problems",
]
