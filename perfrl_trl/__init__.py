"""perfrl_trl: PerfRL (arXiv 2312.05657) for the Hugging Face ecosystem.

The sandbox and the reward import only the standard library; the trainer pulls in torch and
transformers when first used.
"""

from __future__ import annotations

from ._lazy import lazy_attributes

__version__ = "0.1.0"

_LAZY = {
    "ExecutionConfig": "perfrl_trl.execution",
    "Executor": "perfrl_trl.execution",
    "UnitTestRewardFunction": "perfrl_trl.rewards",
    "AsyncUnitTestRewardFunction": "perfrl_trl.rewards",
    "RRHFConfig": "perfrl_trl.trainer",
    "RRHFTrainer": "perfrl_trl.trainer",
    "RRHFCandidateCollator": "perfrl_trl.collator",
    "load_pie": "perfrl_trl.data",
    "build_benchmark": "perfrl_trl.data",
    "load_tokenizer": "perfrl_trl.models",
    "build_model": "perfrl_trl.models",
    "create_pretrained": "perfrl_trl.models",
    "optimize_program": "perfrl_trl.inference",
    "register_metrics": "perfrl_trl.metrics",
}

__all__ = [*sorted(_LAZY), "__version__"]

# `evaluate.load("perfrl/speedup")` must work offline right after `import perfrl_trl`: put the module in
# evaluate's cache (a few file checks, standard library only; never raises, PERFRL_NO_AUTO_REGISTER=1 skips).
from .metrics.registration import ensure_registered as _ensure_registered  # noqa: E402

_ensure_registered()


# Lazy, so `perfrl-trl score` and sandbox users do not pay for importing torch.
__getattr__ = lazy_attributes(__name__, _LAZY)[0]
