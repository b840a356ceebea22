"""RRHF trainer and its configuration."""

from .config import RRHFConfig
from .trainer import RRHFTrainer

__all__ = ["RRHFConfig", "RRHFTrainer"]
