#!/usr/bin/env python
"""Train the bundled byte-level BPE code tokenizer of `perfrl_trl`.

The tokenizer shipped in `perfrl_trl/models/tokenizer/` lets the package build and train models with no
network access (no Hub download of a CodeT5 tokenizer). It is trained on the `.py` files of the Python
standard library of the interpreter that runs this script (`sysconfig.get_paths()["stdlib"]`): code under
the PSF license that every Python install already carries, so training needs no data download and no
research data (PIE is deliberately NOT used, it must not leak into the package).

Design choices:
- Byte-level BPE (GPT-2 / CodeT5 style) with no normalizer, so every byte sequence is representable and
  `decode(encode(src), skip_special_tokens=True) == src` holds exactly (tabs, blank lines, unicode).
- Special tokens follow CodeT5: `<pad>`=0, `<s>`=1, `</s>`=2, `<unk>`=3, so pad id 0 doubles as the T5
  `decoder_start_token_id`. Single sequences are encoded as `<s> ... </s>` like CodeT5's tokenizer.
- Vocabulary 8,192 (default): the tiny test models must stay under 1M parameters and the CPU demo models
  around 5-10M, where a 32k embedding table alone would dominate. On PIE programs 8k costs only a few
  percent more tokens than 16k (the script prints chars/token of the training corpus; compare with
  `--vocab-size 16384`).
- Excluded from the corpus: `site-packages`, machine-specific files (`_sysconfigdata_*`, `config-*`), the
  `test` tree (19 MB of partly deliberately-broken files that distributions such as Debian also ship
  separately), codec tables in `encodings/` (long hex tables that would waste merges) and the prose dump
  `pydoc_data/`.

Determinism: files are read in sorted order, the trainer runs single-threaded (`RAYON_NUM_THREADS=1`, set
before `tokenizers` is imported) and the output is byte-stable (about 10 s on 2 cores). The same CPython version yields the same
`tokenizer.json`; `provenance.json` records the corpus and output SHA-256 and `--check` retrains into a
temporary folder and compares.

Example:
    ```bash
    python scripts/train_tokenizer.py                   # writes perfrl_trl/models/tokenizer/
    python scripts/train_tokenizer.py --check           # retrain and compare with the bundled files
    python scripts/train_tokenizer.py --vocab-size 16384 --output-dir /tmp/tok16k
    ```
"""

from __future__ import annotations

import os

# tokenizers breaks merge ties deterministically (2 threads reproduced the file), pinning is cheap insurance
os.environ["RAYON_NUM_THREADS"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import hashlib
import json
import platform
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import tokenizers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>"]  # ids 0..3, CodeT5 order
DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "perfrl_trl" / "models" / "tokenizer"
EXCLUDED_DIRS = {"site-packages", "dist-packages", "test", "encodings", "pydoc_data", "__pycache__"}
EXCLUDED_PREFIXES = ("_sysconfigdata", "config-")
MODEL_MAX_LENGTH = 2048


def corpus_files(root: Path) -> list[Path]:
    """Sorted `.py` files of the standard library under `root`, minus the exclusions above."""
    files = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        if any(part in EXCLUDED_DIRS or part.startswith(EXCLUDED_PREFIXES) for part in rel.parts):
            continue
        files.append(path)
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def read_sources(files: list[Path]) -> tuple[list[str], str]:
    """Decode every file as UTF-8 (PEP 3120 default); returns the texts and a SHA-256 of the corpus."""
    texts, digest = [], hashlib.sha256()
    for path in files:
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:  # a few legacy files declare another coding; skip rather than guess
            continue
        texts.append(text)
        digest.update(raw)
    return texts, digest.hexdigest()


def build_tokenizer(texts: list[str], vocab_size: int) -> Tokenizer:
    """Train the byte-level BPE model and attach the CodeT5-style `<s> $A </s>` template."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    # No normalizer: NFC/NFKC or whitespace stripping would break the exact round-trip of source code.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )

    def batches() -> Iterator[list[str]]:
        for i in range(0, len(texts), 64):
            yield texts[i : i + 64]

    tok.train_from_iterator(batches(), trainer=trainer, length=len(texts))
    bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> $B:1 </s>:1",
        special_tokens=[("<s>", bos), ("</s>", eos)],
    )
    return tok


def tokenizer_config() -> dict:
    """The `transformers` side: special tokens and no decode-time space clean-up (it corrupts code)."""
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
        "clean_up_tokenization_spaces": False,
        "add_prefix_space": False,
        "model_max_length": MODEL_MAX_LENGTH,
        "padding_side": "right",
        "truncation_side": "right",
        "model_input_names": ["input_ids", "attention_mask"],
    }


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def train(output_dir: Path, vocab_size: int, stdlib: Path) -> dict:
    """Train and write `tokenizer.json`, `tokenizer_config.json` and `provenance.json`."""
    files = corpus_files(stdlib)
    texts, corpus_sha = read_sources(files)
    tok = build_tokenizer(texts, vocab_size)

    n_chars = sum(len(t) for t in texts)
    n_tokens = sum(len(e.ids) - 2 for e in tok.encode_batch(texts))  # minus <s> and </s>
    output_dir.mkdir(parents=True, exist_ok=True)
    tok.save(str(output_dir / "tokenizer.json"), pretty=False)  # compact: ~2x smaller than pretty
    (output_dir / "tokenizer_config.json").write_text(json.dumps(tokenizer_config(), indent=2) + "\n")
    provenance = {
        "script": "scripts/train_tokenizer.py",
        "python": platform.python_version(),
        "tokenizers": tokenizers.__version__,
        "corpus": "Python standard library .py files (PSF license), see EXCLUDED_DIRS in the script",
        "corpus_files": len(texts),
        "corpus_chars": n_chars,
        "corpus_sha256": corpus_sha,
        "vocab_size": tok.get_vocab_size(),
        "chars_per_token": round(n_chars / n_tokens, 4),
        "tokenizer_sha256": _sha256(output_dir / "tokenizer.json"),
    }
    (output_dir / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
    return provenance


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--vocab-size", type=int, default=8192)
    parser.add_argument("--stdlib", type=Path, default=Path(sysconfig.get_paths()["stdlib"]))
    parser.add_argument(
        "--check", action="store_true", help="retrain into a temp dir and compare with --output-dir"
    )
    args = parser.parse_args(argv)

    if not args.check:
        print(json.dumps(train(args.output_dir, args.vocab_size, args.stdlib), indent=2))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = train(Path(tmp), args.vocab_size, args.stdlib)
        same = _sha256(Path(tmp) / "tokenizer.json") == _sha256(args.output_dir / "tokenizer.json")
    print(json.dumps(fresh, indent=2))
    print("reproduced exactly" if same else "DIFFERS from the bundled tokenizer.json", file=sys.stderr)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
