"""Code-optimisation metrics: %OPT, speedup (SP), runtime reduction (RTR), compile and pass rates.

- `arithmetic`: the one implementation of the arithmetic, shared by the evaluate module and the trainer.
- `intervals`: the Wilson and bootstrap confidence intervals it reports.
- `scoring`: runs candidates against their slow input programs in the project's sandbox.
- `registration`: installs `perfrl/speedup` into evaluate's module cache so it loads offline.
- `speedup/`: the evaluate module itself, ready to publish as a Hub Space.

Only `registration` (standard library) is imported eagerly, so that registering at `import perfrl_trl`
costs a few file checks; the rest loads on first use.

Example:

```python
>>> import evaluate
>>> import perfrl_trl  # registers "perfrl/speedup" in evaluate's module cache
>>> speedup = evaluate.load("perfrl/speedup", "runtimes")
>>> speedup.compute(predictions=[0.5, None], references=[1.0, 1.0])["percent_optimized"]
50.0
```
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes
from .registration import (
    METRIC_NAME,
    ensure_registered,
    metric_script_path,
    modules_cache_dir,
    register_metrics,
)

if TYPE_CHECKING:
    from .arithmetic import (
        DEFAULT_MARGIN,
        SampleResult,
        aggregate,
        best_of_k,
        results_from_runtimes,
    )
    from .intervals import bootstrap_ci, wilson_interval
    from .scoring import (
        ALLOW_EXECUTION_ENV,
        ExecutionNotAllowedError,
        execution_allowed,
        require_execution_opt_in,
        score_programs,
    )

_LAZY = {
    **dict.fromkeys(
        (
            "DEFAULT_MARGIN",
            "SampleResult",
            "aggregate",
            "best_of_k",
            "results_from_runtimes",
        ),
        ".arithmetic",
    ),
    **dict.fromkeys(("bootstrap_ci", "wilson_interval"), ".intervals"),
    **dict.fromkeys(
        (
            "ALLOW_EXECUTION_ENV",
            "ExecutionNotAllowedError",
            "execution_allowed",
            "require_execution_opt_in",
            "score_programs",
        ),
        ".scoring",
    ),
}

__all__ = [
    "ALLOW_EXECUTION_ENV",
    "DEFAULT_MARGIN",
    "METRIC_NAME",
    "ExecutionNotAllowedError",
    "SampleResult",
    "aggregate",
    "best_of_k",
    "bootstrap_ci",
    "ensure_registered",
    "execution_allowed",
    "metric_script_path",
    "modules_cache_dir",
    "register_metrics",
    "require_execution_opt_in",
    "results_from_runtimes",
    "score_programs",
    "wilson_interval",
]


# numpy (arithmetic) is only paid for when the metrics are used, not at `import perfrl_trl`.
__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
