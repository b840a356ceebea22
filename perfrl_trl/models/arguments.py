"""Which model a recipe starts from, as command-line arguments (like TRL's ``ModelConfig``)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import get_args

from .bundled import resolve_checkpoint
from .factory import Arch, Size, create_pretrained


@dataclass
class ModelArguments:
    """A recipe's model: a folder or Hub id, or a new, randomly initialised model of the factory's presets.

    Args:
        model_name_or_path: A checkpoint folder or Hub id, or the name of a checkpoint shipped in the package
            (``"bundled"``: the T5; ``"bundled-causal"``: the decoder-only model), which becomes its folder;
            `None` lets the recipe choose (the bundled T5, or a new model).
        model_arch: For a new model: ``"t5"`` (encoder-decoder) or ``"decoder"`` (decoder-only).
        model_size: For a new model: one of the factory's sizes (``tiny``, ``small``, ``base``, ``codet5-small``).
        dropout_rate: For a new model: its dropout.

    Example:
        ```python
        >>> from perfrl_trl.models import ModelArguments, load_model_and_tokenizer
        >>> path = ModelArguments(model_size="tiny").new_model("/tmp/perfrl-args-tiny", seed=0)
        >>> load_model_and_tokenizer(path)[0].config.model_type
        't5'
        >>> load_model_and_tokenizer(ModelArguments("bundled-causal").model_name_or_path)[0].config.model_type
        'llama'

        ```
    """

    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Hub id or folder, or a bundled checkpoint: 'bundled' (T5) or 'bundled-causal' (decoder-only); "
            "default: the bundled T5 (or a new model)."
        },
    )
    model_arch: str = field(default="t5", metadata={"help": "From scratch: 't5' or 'decoder'."})
    model_size: str = field(
        default="small", metadata={"help": "From scratch: tiny, small, base, codet5-small."}
    )
    dropout_rate: float = field(default=0.0, metadata={"help": "From scratch: dropout of the new model."})

    def __post_init__(self):
        # A bundled name becomes its folder here, so that every recipe loads it like any other path.
        if self.model_name_or_path is not None:
            self.model_name_or_path = resolve_checkpoint(self.model_name_or_path)
        if self.model_arch not in get_args(Arch):
            raise ValueError(f"--model_arch must be one of {get_args(Arch)}, got {self.model_arch!r}")
        if self.model_size not in get_args(Size):
            raise ValueError(f"--model_size must be one of {get_args(Size)}, got {self.model_size!r}")
        if not 0.0 <= self.dropout_rate < 1.0:
            raise ValueError(f"--dropout_rate must be in [0, 1), got {self.dropout_rate!r}")

    def new_model(self, path: str | os.PathLike, seed: int) -> str:
        """Write a randomly initialised model of ``model_arch`` / ``model_size`` to ``path`` and return it.

        Under ``accelerate launch`` the main process writes it and the other ranks wait, so that every rank
        loads the same weights.
        """
        from accelerate import PartialState

        state = PartialState()
        if state.is_main_process:
            create_pretrained(
                self.model_arch,
                self.model_size,
                path,
                seed=seed,
                overwrite=True,
                dropout_rate=self.dropout_rate,
            )
        state.wait_for_everyone()
        return str(path)
