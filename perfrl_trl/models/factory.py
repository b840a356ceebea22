"""Randomly initialised code models of fixed sizes, saved as ordinary Hugging Face checkpoints.

Two families:
- `"t5"`: a CodeT5-style `T5ForConditionalGeneration` (seq2seq, as in the PerfRL paper): original-T5 ReLU
  feed-forward, tied embeddings, `decoder_start_token_id = pad_token_id = 0`.
- `"decoder"`: a `LlamaForCausalLM` (RMSNorm, SwiGLU, rotary positions) with tied embeddings.

Sizes (parameter counts with the bundled 8,192-token tokenizer; the embedding table grows with the vocab):

| size           | t5 (enc+dec layers, d_model) | t5 params | decoder (layers, hidden) | decoder params |
|----------------|------------------------------|-----------|--------------------------|----------------|
| `tiny`         | 2+2, 64                      | 0.75M     | 2, 64                    | 0.63M          |
| `small`        | 3+3, 256                     | 7.6M      | 6, 256                   | 6.8M           |
| `base`         | 6+6, 384                     | 28M       | 8, 512                   | 30M            |
| `codet5-small` | 6+6, 512 (CodeT5-small)      | 48M       | 14, 512                  | 49M            |

`codet5-small` is CodeT5-small's exact architecture: with CodeT5's own 32,100-token vocabulary it has the same
60.5M parameters. `tiny` is for tests (a training step takes milliseconds), `small` for CPU demos, the others
for GPU runs. The rest of the package only ever calls `from_pretrained(path_or_name)`: [`create_pretrained`]
writes such a folder, and [`load_model_and_tokenizer`] reads it (or a Hub model such as
`Salesforce/codet5-small`).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Literal

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    GenerationConfig,
    LlamaConfig,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    T5Config,
)

from .tokenization import load_tokenizer, prepare_tokenizer

Arch = Literal["t5", "decoder"]
Size = Literal["tiny", "small", "base", "codet5-small"]

T5_PRESETS: dict[str, dict] = {
    "tiny": {"d_model": 64, "d_ff": 256, "num_layers": 2, "num_heads": 4, "d_kv": 16},
    "small": {"d_model": 256, "d_ff": 1024, "num_layers": 3, "num_heads": 4, "d_kv": 64},
    "base": {"d_model": 384, "d_ff": 1536, "num_layers": 6, "num_heads": 6, "d_kv": 64},
    # Salesforce/codet5-small's config.json, apart from vocab_size.
    "codet5-small": {"d_model": 512, "d_ff": 2048, "num_layers": 6, "num_heads": 8, "d_kv": 64},
}
# intermediate_size ~ 8/3 * hidden (SwiGLU keeps the MLP at the cost of a 4x ReLU MLP); codet5-small
# gets the depth that matches the T5 preset's parameter count.
DECODER_PRESETS: dict[str, dict] = {
    "tiny": {"hidden_size": 64, "intermediate_size": 176, "num_hidden_layers": 2, "num_attention_heads": 4},
    "small": {"hidden_size": 256, "intermediate_size": 688, "num_hidden_layers": 6, "num_attention_heads": 4},
    "base": {"hidden_size": 512, "intermediate_size": 1376, "num_hidden_layers": 8, "num_attention_heads": 8},
    "codet5-small": {
        "hidden_size": 512,
        "intermediate_size": 1376,
        "num_hidden_layers": 14,
        "num_attention_heads": 8,
    },
}


def _check(arch: str, size: str) -> dict:
    presets = {"t5": T5_PRESETS, "decoder": DECODER_PRESETS}.get(arch)
    if presets is None:
        raise ValueError(f"arch must be 't5' or 'decoder', got {arch!r}")
    if size not in presets:
        raise ValueError(f"size must be one of {sorted(presets)}, got {size!r}")
    return presets[size]


def model_config(
    arch: Arch, size: Size, tokenizer: PreTrainedTokenizerBase | None = None, **overrides
) -> PretrainedConfig:
    """The `transformers` config of a preset, with vocab size and special-token ids taken from the tokenizer.

    Args:
        arch (`str`): `"t5"` (encoder-decoder) or `"decoder"` (decoder-only).
        size (`str`): `"tiny"`, `"small"`, `"base"` or `"codet5-small"`.
        tokenizer (`PreTrainedTokenizerBase`, *optional*): defaults to the bundled tokenizer.
        **overrides: config fields to change, e.g. `dropout_rate=0.0` or `vocab_size=32100`.

    Returns:
        `T5Config` or `LlamaConfig`.

    Example:
        ```python
        >>> model_config("t5", "codet5-small", vocab_size=32100).d_model
        512
        ```
    """
    preset = _check(arch, size)
    tok = tokenizer if tokenizer is not None else load_tokenizer()
    # The decoder-only models use EOS as pad when the tokenizer has no pad (see `prepare_tokenizer`).
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    ids = {"pad_token_id": pad_id, "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id}
    ids["vocab_size"] = len(tok)
    if arch == "t5":
        fields = {
            "feed_forward_proj": "relu",
            "dropout_rate": 0.1,
            "decoder_start_token_id": pad_id,
            **ids,
            **preset,
        }
        return T5Config(**{**fields, **overrides})
    fields = {
        "num_key_value_heads": preset["num_attention_heads"],
        "max_position_embeddings": 2048,  # rotary: free in parameters; = the bundled model_max_length
        "tie_word_embeddings": True,
        **ids,
        **preset,
    }
    return LlamaConfig(**{**fields, **overrides})


def count_parameters(config: PretrainedConfig) -> int:
    """Number of parameters of a config's model, counted on the meta device (no memory, instantaneous).

    Args:
        config (`PretrainedConfig`): an encoder-decoder or causal-LM config.

    Returns:
        `int`: the count, tied embeddings counted once.

    Example:
        ```python
        >>> count_parameters(model_config("t5", "codet5-small", vocab_size=32100))
        60492288
        ```
    """
    auto = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    with torch.device("meta"):
        model = auto.from_config(config)
    return sum(p.numel() for p in model.parameters())


def build_model(
    arch: Arch,
    size: Size,
    tokenizer: PreTrainedTokenizerBase | None = None,
    save_dir: str | os.PathLike | None = None,
    seed: int = 0,
    **overrides,
) -> PreTrainedModel:
    """Build a randomly initialised model of a preset size, optionally saving it as a checkpoint.

    Args:
        arch (`str`): `"t5"` for a CodeT5-style `T5ForConditionalGeneration`, `"decoder"` for a
            `LlamaForCausalLM`.
        size (`str`): `"tiny"` (<1M params, tests), `"small"` (~7M, CPU demo), `"base"` (~30M) or
            `"codet5-small"` (CodeT5-small's architecture).
        tokenizer (`PreTrainedTokenizerBase`, *optional*): sets the vocab size and special ids; defaults to the
            bundled tokenizer. It is not modified (the copy saved with a decoder goes through
            [`prepare_tokenizer`]).
        save_dir (`str` or `os.PathLike`, *optional*): if given, the model and tokenizer are saved there as with
            [`create_pretrained`].
        seed (`int`, defaults to 0): seeds the weight initialisation; the global RNG state is left untouched.
        **overrides: config fields to change (see [`model_config`]).

    Returns:
        `PreTrainedModel`: in training mode, on CPU, float32.

    Example:
        ```python
        >>> model = build_model("t5", "tiny")
        >>> model.num_parameters() < 1_000_000
        True
        ```
    """
    tok = tokenizer if tokenizer is not None else load_tokenizer()
    config = model_config(arch, size, tok, **overrides)
    auto = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = auto.from_config(config)
    model.generation_config = GenerationConfig(
        pad_token_id=config.pad_token_id,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        decoder_start_token_id=getattr(config, "decoder_start_token_id", None),
    )
    model.train()
    if save_dir is not None:
        _save(model, tok, save_dir)
    return model


def create_pretrained(
    arch: Arch,
    size: Size,
    save_dir: str | os.PathLike,
    tokenizer: PreTrainedTokenizerBase | None = None,
    seed: int = 0,
    overwrite: bool = False,
    **overrides,
) -> str:
    """Write a fresh checkpoint folder (config, safetensors weights, tokenizer files) and return its path.

    Args:
        arch, size, tokenizer, seed, **overrides: as in [`build_model`].
        save_dir (`str` or `os.PathLike`): the folder to create.
        overwrite (`bool`, defaults to `False`): replace a checkpoint already in `save_dir` (otherwise
            `FileExistsError`, so a trained model is never silently reset to random weights).

    Returns:
        `str`: `save_dir`, to pass to `from_pretrained` or [`load_model_and_tokenizer`].

    Example:
        ```python
        >>> path = create_pretrained("decoder", "tiny", "/tmp/perfrl-tiny-decoder", overwrite=True)
        >>> model, tok = load_model_and_tokenizer(path)
        >>> tok.padding_side
        'left'
        ```
    """
    if (Path(save_dir) / "config.json").exists() and not overwrite:
        raise FileExistsError(f"{save_dir} already holds a checkpoint; pass overwrite=True to replace it")
    build_model(arch, size, tokenizer, save_dir=save_dir, seed=seed, **overrides)
    return str(save_dir)


def _save(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, save_dir: str | os.PathLike) -> None:
    tok = prepare_tokenizer(copy.deepcopy(tokenizer), model.config.is_encoder_decoder)
    model.save_pretrained(save_dir)
    tok.save_pretrained(save_dir)


def load_model_and_tokenizer(
    name_or_path: str | os.PathLike,
    tokenizer_name_or_path: str | os.PathLike | None = None,
    **model_kwargs,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a seq2seq or causal LM and its tokenizer, picking the class from `config.is_encoder_decoder`.

    Works the same for a folder written by [`create_pretrained`], a training checkpoint, or a Hub model such as
    `Salesforce/codet5-small`. Decoder-only tokenizers are adapted by [`prepare_tokenizer`] (left padding, a
    pad token, no EOS after the prompt) and the model's pad id is aligned with the tokenizer's.

    Args:
        name_or_path (`str` or `os.PathLike`): model id or folder.
        tokenizer_name_or_path (`str` or `os.PathLike`, *optional*): defaults to `name_or_path`.
        **model_kwargs: forwarded to `from_pretrained` (e.g. `dtype=torch.bfloat16`, `device_map="auto"`).

    Returns:
        `tuple[PreTrainedModel, PreTrainedTokenizerBase]`

    Example:
        ```python
        >>> model, tok = load_model_and_tokenizer(create_pretrained("t5", "tiny", "/tmp/t5-tiny", overwrite=True))
        >>> type(model).__name__, tok.padding_side
        ('T5ForConditionalGeneration', 'right')
        ```
    """
    config = AutoConfig.from_pretrained(name_or_path)
    auto = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    model = auto.from_pretrained(name_or_path, **model_kwargs)
    tokenizer = load_tokenizer(tokenizer_name_or_path or name_or_path)
    prepare_tokenizer(tokenizer, config.is_encoder_decoder)
    if not config.is_encoder_decoder and model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer
