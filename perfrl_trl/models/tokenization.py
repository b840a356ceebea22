"""The bundled offline code tokenizer and the padding conventions of the two model families.

The tokenizer in `perfrl_trl/models/tokenizer/` is a byte-level BPE (8,192 tokens) trained by
`scripts/train_tokenizer.py` on the Python standard library, so the package works with no Hub access. It
follows CodeT5's conventions: `<pad>`=0 (also the T5 `decoder_start_token_id`), `<s>`=1, `</s>`=2, `<unk>`=3,
and a single text is encoded as `<s> text </s>`. Decoding with `skip_special_tokens=True` gives the source
back byte for byte. As with any HF tokenizer, the literal text of a special token (`"</s>"` inside a string)
is read as that token; pass `split_special_tokens=True` when encoding arbitrary files that may contain one
(PIE's programs do not). It is not the default because TRL appends `eos_token` to completions as text.
"""

from __future__ import annotations

import os
from pathlib import Path

from tokenizers import processors
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

BUNDLED_TOKENIZER_DIR = Path(__file__).resolve().parent / "tokenizer"


def load_tokenizer(name_or_path: str | os.PathLike | None = None, **kwargs) -> PreTrainedTokenizerBase:
    """Load the bundled code tokenizer, or any tokenizer `AutoTokenizer` can load.

    Args:
        name_or_path (`str` or `os.PathLike`, *optional*):
            `None` loads the tokenizer shipped with the package (offline). Anything else is passed unchanged
            to `AutoTokenizer.from_pretrained`, e.g. `"Salesforce/codet5-small"` (needs the Hub or its cache)
            or a checkpoint folder written by [`create_pretrained`].
        **kwargs:
            Forwarded to `from_pretrained` (e.g. `padding_side="left"`).

    Returns:
        `PreTrainedTokenizerBase`: a `PreTrainedTokenizerFast` for the bundled tokenizer.

    Example:
        ```python
        >>> from perfrl_trl.models import load_tokenizer
        >>> tok = load_tokenizer()
        >>> src = "def f(x):\\n\\treturn x  # é\\n"
        >>> tok.decode(tok(src).input_ids, skip_special_tokens=True) == src
        True
        >>> tok.pad_token_id, tok.bos_token_id, tok.eos_token_id
        (0, 1, 2)
        ```
    """
    if name_or_path is None:
        return PreTrainedTokenizerFast.from_pretrained(BUNDLED_TOKENIZER_DIR, **kwargs)
    return AutoTokenizer.from_pretrained(name_or_path, **kwargs)


def prepare_tokenizer(
    tokenizer: PreTrainedTokenizerBase, is_encoder_decoder: bool
) -> PreTrainedTokenizerBase:
    """Adapt a tokenizer, in place, to the padding and special-token needs of its model family.

    Encoder-decoder (T5) models are left as they are: right padding, `<s> text </s>` encoder inputs.

    Decoder-only models generate right after the prompt, so:
    - padding goes on the left, so that the last position of every row is a real prompt token;
    - a pad token must exist: when the tokenizer has none (GPT-2 style) the EOS token is used, which is safe
      because padded positions are masked by `attention_mask`;
    - a prompt must not end with EOS: if the tokenizer appends EOS to every text (as the bundled one does
      for T5), its post-processor is rewritten to keep only the BOS prefix. Training code appends EOS to
      completions itself.

    The change is saved with `tokenizer.save_pretrained`, so a decoder checkpoint written by
    [`create_pretrained`] reloads with these settings through plain `AutoTokenizer.from_pretrained`.

    Args:
        tokenizer (`PreTrainedTokenizerBase`): the tokenizer to adapt (modified in place).
        is_encoder_decoder (`bool`): `model.config.is_encoder_decoder`.

    Returns:
        `PreTrainedTokenizerBase`: the same tokenizer object.

    Example:
        ```python
        >>> tok = prepare_tokenizer(load_tokenizer(), is_encoder_decoder=False)
        >>> tok.padding_side, tok("x").input_ids[-1] == tok.eos_token_id
        ('left', False)
        ```
    """
    if is_encoder_decoder:
        return tokenizer
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    ids = tokenizer("x").input_ids
    if tokenizer.eos_token_id is not None and ids and ids[-1] == tokenizer.eos_token_id:
        if not tokenizer.is_fast:
            raise ValueError(
                f"{type(tokenizer).__name__} appends EOS to every text and is not a fast tokenizer, so its "
                "post-processor cannot be changed for a decoder-only model; use a fast tokenizer."
            )
        with_bos = tokenizer.bos_token_id is not None and ids[0] == tokenizer.bos_token_id
        special = [(tokenizer.bos_token, tokenizer.bos_token_id)] if with_bos else []
        prefix = f"{tokenizer.bos_token} " if with_bos else ""
        tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{prefix}$A", pair=f"{prefix}$A $B:1", special_tokens=special
        )
    return tokenizer
