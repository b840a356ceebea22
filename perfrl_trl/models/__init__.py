"""Code models and the bundled offline tokenizer (see `factory` and `tokenization`)."""

from .arguments import ModelArguments
from .bundled import (
    BUNDLED_CAUSAL_CHECKPOINT,
    BUNDLED_CHECKPOINT,
    BUNDLED_CHECKPOINTS,
    checkpoint_card,
    export_checkpoint,
    resolve_checkpoint,
)
from .factory import (
    DECODER_PRESETS,
    T5_PRESETS,
    build_model,
    count_parameters,
    create_pretrained,
    load_model_and_tokenizer,
    model_config,
)
from .tokenization import BUNDLED_TOKENIZER_DIR, load_tokenizer, prepare_tokenizer

__all__ = [
    "BUNDLED_CAUSAL_CHECKPOINT",
    "BUNDLED_CHECKPOINT",
    "BUNDLED_CHECKPOINTS",
    "BUNDLED_TOKENIZER_DIR",
    "DECODER_PRESETS",
    "T5_PRESETS",
    "ModelArguments",
    "build_model",
    "checkpoint_card",
    "count_parameters",
    "create_pretrained",
    "export_checkpoint",
    "load_model_and_tokenizer",
    "load_tokenizer",
    "model_config",
    "prepare_tokenizer",
    "resolve_checkpoint",
]
