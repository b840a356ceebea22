"""The SFT checkpoints shipped inside the package, and how a trained model becomes one.

`BUNDLED_CHECKPOINT` (a T5, the recipes' and the CLI's default) and `BUNDLED_CAUSAL_CHECKPOINT` (a decoder-only
Llama-style model, for trainers that need a causal LM such as TRL's `GRPOTrainer`) are ordinary Hugging Face
folders (config, safetensors weights, tokenizer, model card), so `load_model_and_tokenizer(BUNDLED_CHECKPOINT)`,
`AutoModelForSeq2SeqLM.from_pretrained(BUNDLED_CHECKPOINT)` and
`AutoModelForCausalLM.from_pretrained(BUNDLED_CAUSAL_CHECKPOINT)` all work offline. `BUNDLED_CHECKPOINTS` names
them ("bundled", "bundled-causal") and `resolve_checkpoint` turns such a name into its folder, which is how the
recipes' `--model_name_or_path` and `perfrl-trl optimize --model` accept them.

The weights are stored in bfloat16 to keep the wheel small, while the config asks for float32, so
`from_pretrained` loads a float32 model that trains and generates as the original did.
`examples/pretrain_checkpoint.py` regenerates them (`--preset real` the causal one); each folder's README.md
(`checkpoint_card`, from the template `checkpoint_card.md` beside this module) says with what data, for how
long, and how it scores on held-out problems.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

BUNDLED_CHECKPOINT = Path(__file__).resolve().parent / "checkpoint"
BUNDLED_CAUSAL_CHECKPOINT = Path(__file__).resolve().parent / "checkpoint_causal"
# The names a recipe or the CLI accepts in place of a folder or Hub id. They start with "bundled" so that a name
# that does not resolve can be told from a Hub id (`resolve_checkpoint`).
BUNDLED_CHECKPOINTS: dict[str, Path] = {
    "bundled": BUNDLED_CHECKPOINT,
    "bundled-causal": BUNDLED_CAUSAL_CHECKPOINT,
}
_BUNDLED_PREFIX = "bundled"
# The limit the checkpoint's folder must stay under (it ships in the wheel).
MAX_BUNDLED_BYTES = 25 * 1024 * 1024
# The checkpoint's model card, with `str.format` fields (see `checkpoint_card`).
CARD_TEMPLATE = Path(__file__).resolve().parent / "checkpoint_card.md"


def resolve_checkpoint(name_or_path: str | os.PathLike | None, default: str = "bundled") -> str:
    """The folder or Hub id to load: a bundled checkpoint's folder for its name, anything else unchanged.

    A name of `BUNDLED_CHECKPOINTS` always means the bundled checkpoint (write ``./bundled`` for a folder of that
    name). Another bare name that starts with ``bundled`` and is not an existing path is taken for a mistyped
    bundled name rather than handed to the Hub, where it would fail with a less useful message.

    Args:
        name_or_path: A bundled name (``"bundled"``, ``"bundled-causal"``), a folder or a Hub id; `None` for the
            default.
        default: The bundled name `None` stands for.

    Returns:
        `str`: the path of the bundled folder, or `name_or_path` as given.

    Raises:
        ValueError: For an unknown bundled name (the message lists the names).

    Example:
        ```python
        >>> from perfrl_trl.models import BUNDLED_CAUSAL_CHECKPOINT, resolve_checkpoint
        >>> resolve_checkpoint("bundled-causal") == str(BUNDLED_CAUSAL_CHECKPOINT)
        True
        >>> resolve_checkpoint("Salesforce/codet5-small")
        'Salesforce/codet5-small'

        ```
    """
    name = default if name_or_path is None else os.fspath(name_or_path)
    if name in BUNDLED_CHECKPOINTS:
        return str(BUNDLED_CHECKPOINTS[name])
    bare = os.sep not in name and "/" not in name
    if bare and name.startswith(_BUNDLED_PREFIX) and not os.path.exists(name):
        choices = ", ".join(repr(key) for key in BUNDLED_CHECKPOINTS)
        raise ValueError(
            f"unknown bundled checkpoint {name!r}: choose one of {choices}, or give a checkpoint folder or Hub id"
        )
    return name


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
        raise ValueError(
            f"{dst} is {size / 2**20:.1f} MiB, over the {MAX_BUNDLED_BYTES / 2**20:.0f} MiB limit"
        )
    return dst


def checkpoint_card(
    held_out: Mapping[str, Mapping[str, Any]],
    config: Any,
    *,
    model_size: str,
    dropout_rate: float,
    n_per_family: int,
    seed: int,
    n_problems: int,
    n_families: int,
    dropped: int,
    eval_seed: int,
    eval_reserve: int,
    heldout_families: Iterable[str],
    steps: int,
    seconds: float,
    eval_per_family: int,
    cores: int | None = None,
    denoising: Mapping[str, Any] | None = None,
    rewrite_pairs: Mapping[str, Any] | None = None,
    pie: Mapping[str, Any] | None = None,
    preset: str | None = None,
    model_arch: str = "t5",
) -> str:
    """The bundled checkpoint's README.md: its data, its training and its held-out results.

    Args:
        held_out: ``{split label: summary}``, one table row each, in order; a summary is
            `ModelEvaluation.summary` (``n_samples``, ``percent_passed`` and its ``percent_passed_ci``,
            ``percent_optimized``, ``percent_compiled``, ``truncation_rate``).
        config: The run's `RRHFConfig` (batch size, learning rate, warm-up, lengths, beams, timing trials, margin).
        model_size, dropout_rate: The `create_pretrained(model_arch, ...)` the training started from.
        n_per_family, seed: The `pretraining_problems` call; `n_problems` and `n_families` what it returned,
            `dropped` how many it left out for meeting the first `eval_reserve` problems of `eval_seed`.
        heldout_families: The families it never trained on.
        steps, seconds: How long the training ran.
        eval_per_family: The `build_benchmark(n_per_family=..., seed=eval_seed)` the results come from.
        cores: The machine's CPU cores (default: `os.cpu_count()`).
        denoising: When the model was first pretrained by span corruption: ``steps``, ``seconds``,
            ``input_length``, ``full_target_fraction`` and ``corpus`` (`build_corpus`'s manifest).
        rewrite_pairs: When SFT also saw verified rewrite pairs: `build_rewrite_pairs`'s report, with ``seed`` and
            ``repeats`` (times each pair is in the SFT data).
        pie: Results on PIE's evaluation half: ``counts`` (``programs``, ``passing_own_tests``, ``left_out``,
            ``judged``), ``checkpoint`` and ``dataset target`` (`ModelEvaluation.to_dict()`), ``optimize``
            (`optimize_dataset`'s report, with the ``samples`` it drew per program).
        preset: The recipe's `--preset`, named in the card's command that regenerates the checkpoint (None: the
            command has no `--preset`).
        model_arch: `"t5"` (encoder-decoder) or `"decoder"` (decoder-only, Llama-style).
    """

    def row(label: str, s: Mapping[str, Any]) -> str:
        ci = s.get("percent_passed_ci") or (None, None)
        return (
            f"| {label} | {s['n_samples']} | {s['percent_passed']:.1f} [{ci[0]:.1f}, {ci[1]:.1f}] | "
            f"{s['percent_optimized']:.1f} | {s['percent_compiled']:.1f} | {100 * s['truncation_rate']:.1f} |"
        )

    how_trained = (
        "trained from scratch with supervised fine-tuning on the bundled benchmark's\nslow -> fast pairs"
    )
    extra_data = extra_training = ""
    if denoising:
        corpus = denoising["corpus"]
        how_trained = (
            "pretrained on real Python by span corruption, then fine-tuned on the bundled benchmark's\n"
            "slow -> fast pairs" + (" and on verified rewrites of generated scripts" if rewrite_pairs else "")
        )
        n_dists = sum(name != "python-stdlib" for name in corpus["packages"])
        extra_data += (
            f"- Denoising corpus: {corpus['counts']['files']} Python files ({corpus['counts']['bytes'] / 1e6:.0f} MB) "
            f"of the standard library of Python {corpus['python']} and of {n_dists} installed distributions, read\n"
            f"  where they are installed and deduplicated by content; {corpus['counts']['excluded']} files left out "
            "because their hash is a PIE or\n  evaluation program's. `corpus_manifest.json` lists each package's "
            "version and every file's hash.\n"
        )
        extra_training = (
            f"Span-corruption pretraining first: {denoising['steps']} optimizer steps in "
            f"{denoising['seconds'] / 60:.0f} minutes, windows corrupted\nto at most {denoising['input_length']} "
            f"tokens (15% noise in spans of 3), {100 * denoising['full_target_fraction']:.0f}% of the batches "
            "asking for the whole window back.\nThen SFT: "
        )
    if rewrite_pairs:
        extra_data += (
            f"- Rewrite pairs: {rewrite_pairs['pairs']} pairs from {rewrite_pairs['programs']} generated scripts "
            f"(`build_rewrite_pairs(seed={rewrite_pairs['seed']})`),\n  each rewritten program judged faster by "
            f"the sandbox; every pair {rewrite_pairs['repeats']} times in the SFT data.\n"
        )
    return CARD_TEMPLATE.read_text().format(
        how_trained=how_trained,
        preset_flag=f" --preset {preset}" if preset else "",
        extra_data=extra_data,
        extra_training=extra_training,
        extra_results=pie_section(pie, config) if pie else "",
        model_size=model_size,
        model_arch=model_arch,
        arch_name={"t5": "T5", "decoder": "decoder-only Llama-style model"}[model_arch],
        arch_tag={"t5": "t5", "decoder": "llama"}[model_arch],
        dropout_rate=dropout_rate,
        n_per_family=n_per_family,
        seed=seed,
        n_problems=n_problems,
        n_families=n_families,
        dropped=dropped,
        eval_reserve=eval_reserve,
        eval_seed=eval_seed,
        heldout_families=", ".join(sorted(heldout_families)),
        steps=steps,
        minutes=seconds / 60,
        cores=cores or os.cpu_count(),
        batch_size=config.per_device_train_batch_size,
        learning_rate=config.learning_rate,
        warmup_steps=config.warmup_steps,
        max_prompt_length=config.max_prompt_length,
        max_completion_length=config.max_completion_length,
        eval_per_family=eval_per_family,
        num_beams=config.eval_num_beams,
        num_return_sequences=config.eval_num_return_sequences,
        n_trials=config.execution_n_trials,
        margin=config.speedup_margin,
        rows="\n".join(row(label, summary) for label, summary in held_out.items()),
    )


def pie_section(pie: Mapping[str, Any], config: Any) -> str:
    """The model card's section on PIE's evaluation half (see `checkpoint_card`'s `pie`)."""
    from ..metrics.intervals import wilson_interval

    counts, opt = pie["counts"], pie["optimize"]
    left_out = ", ".join(f"{k} {v}" for k, v in sorted(counts["left_out"].items())) or "none"

    def row(label: str, s: Mapping[str, Any]) -> str:
        return (
            f"| {label} | {s['n_samples']} | {s['percent_compiled']:.1f} | "
            f"{100 * s['candidate_compile_rate']:.1f} | {s['percent_passed']:.1f} | "
            f"{s['percent_optimized']:.1f} | {s['speedup']:.2f} | {s['runtime_reduction']:.1f} |"
        )

    lo, hi = wilson_interval(opt["found"], opt["programs"])
    model = f"checkpoint (beam {config.eval_num_beams}, best of {config.eval_num_return_sequences})"
    return (
        "\n## PIE, evaluation half\n"
        "Real programs nobody on the project wrote: the slow programs of PIE's evaluation half "
        "(`perfrl_trl.data.pie.split_of`),\nnever trained on. "
        f"{counts['programs']} distinct programs, {counts['passing_own_tests']} of which pass their own public "
        f"tests ({left_out} left out);\n{counts['judged']} judged, with the beams and timing above, beside "
        "PIE's own targets judged in the same run.\n\n"
        "| | n | compile % (problems) | compile % (programs returned) | pass % | %OPT | SP | RTR |\n"
        "|---|---|---|---|---|---|---|---|\n"
        f"{row(model, pie['checkpoint']['summary'])}\n"
        f"{row('PIE target', pie['dataset target']['summary'])}\n\n"
        f"`perfrl-trl optimize` at its defaults (greedy and {opt['samples']} samples, and the generic rewrites) "
        f"found a verified\nfaster version for {opt['found']} of {opt['programs']} programs "
        f"({100 * opt['found_rate']:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]): the model's own candidate for "
        f"{opt['found_by_model']}, a generic rewrite\nfor {opt['found_by_rewrite']}; "
        f"{100 * opt['candidate_compile_rate']:.1f}% of the model's candidates compile.\n"
    )
