"""The SFT checkpoint shipped inside the package, and how a trained model becomes one.

`BUNDLED_CHECKPOINT` is an ordinary Hugging Face folder (config, safetensors weights, tokenizer, model card), so
`load_model_and_tokenizer(BUNDLED_CHECKPOINT)` and `AutoModelForSeq2SeqLM.from_pretrained(BUNDLED_CHECKPOINT)`
both work offline. The weights are stored in bfloat16 to keep the wheel small, while the config asks for float32,
so `from_pretrained` loads a float32 model that trains and generates as the original did.
`examples/train_pie.py --preset pretrain` regenerates it; its README.md says with what data, for how long, and
how it scores on held-out problems.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

BUNDLED_CHECKPOINT = Path(__file__).resolve().parent / "checkpoint"
# The limit the checkpoint's folder must stay under (it ships in the wheel).
MAX_BUNDLED_BYTES = 25 * 1024 * 1024


def export_checkpoint(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    storage_dtype: torch.dtype = torch.bfloat16,
    extra_files: dict[str, str] | None = None,
) -> Path:
    """Write a trained model as a compact checkpoint folder: weights in `storage_dtype`, loaded as float32.

    Args:
        src: A checkpoint folder (from `save_model`).
        dst: The folder to (re)write; its previous content is removed.
        storage_dtype: The dtype the safetensors hold.
        extra_files: ``{file name: text}`` written beside the weights (model card, manifests).

    Returns:
        `Path` of `dst`.

    Example:
        ```python
        >>> from perfrl_trl.models import create_pretrained
        >>> path = export_checkpoint(create_pretrained("t5", "tiny", "/tmp/t5-tiny", overwrite=True), "/tmp/t5-tiny-bf16")
        >>> json.loads((path / "config.json").read_text())["dtype"]
        'float32'
        ```
    """
    from .factory import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(src)
    dst = Path(dst)
    if dst.exists():
        shutil.rmtree(dst)
    model.to(storage_dtype).save_pretrained(dst)
    tok.save_pretrained(dst)
    config_path = dst / "config.json"
    config = json.loads(config_path.read_text())
    config["dtype"] = "float32"  # from_pretrained upcasts the stored weights
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    for name, text in (extra_files or {}).items():
        (dst / name).write_text(text)
    size = sum(f.stat().st_size for f in dst.rglob("*") if f.is_file())
    if size > MAX_BUNDLED_BYTES:
        raise ValueError(f"{dst} is {size / 2**20:.1f} MiB, over the {MAX_BUNDLED_BYTES / 2**20:.0f} MiB limit")
    return dst
