"""The model card pushed with an RRHF-trained model."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from huggingface_hub import ModelCard, ModelCardData

from .. import citations

if TYPE_CHECKING:
    from transformers import PretrainedConfig

    from .config import RRHFConfig

CITATIONS = "```bibtex\n" + citations.PERFRL + citations.RRHF + citations.PIE + "```"

TEMPLATE = """---
{card_data}
---

# {model_name}

This model was trained with **PerfRL** ([arXiv 2312.05657](https://arxiv.org/abs/2312.05657)) using
[perfrl_trl](https://github.com/perfrl/perfrl_trl): supervised fine-tuning on slow→fast program pairs,
then **RRHF** ([arXiv 2304.05302](https://arxiv.org/abs/2304.05302)) steps whose ranking comes from running
the model's candidate programs against unit tests in a sandbox and timing them (tiers: R1 does not compile,
R2 fails, R3 passes, R4 passes and is faster by a {margin} margin).

Base model: `{base_model}`. Training data: {dataset}.

## Use

```python
from transformers import AutoTokenizer, {auto_class}

tok = AutoTokenizer.from_pretrained("{model_name}")
model = {auto_class}.from_pretrained("{model_name}")
ids = tok("Write faster version:\\n" + slow_program, return_tensors="pt").input_ids
print(tok.decode(model.generate(ids, num_beams=4, max_new_tokens=512)[0], skip_special_tokens=True))
```

Always verify a generated program before using it: `perfrl-trl optimize` keeps only candidates that pass
every test and are measurably faster.

## Final metrics

{metrics}

## Training hyper-parameters

{hparams}

## Citations

{citations}
"""


def _final_metrics(log_history: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    found: dict[str, float] = {}
    for entry in log_history:
        for key, value in entry.items():
            if isinstance(value, (int, float)) and (
                key.startswith("eval_") or key in ("reward", "train_loss")
            ):
                found[key] = value
    return found


def write_model_card(
    args: RRHFConfig,
    model_config: PretrainedConfig,
    log_history: Sequence[Mapping[str, Any]],
    global_step: int,
    tags: Iterable[str] = (),
    model_name: str | None = None,
    dataset_name: str | None = None,
) -> str:
    """Write ``README.md`` into ``args.output_dir`` and return its path.

    Args:
        args: The run's [`RRHFConfig`].
        model_config: The trained model's config (its base name and whether it is seq2seq).
        log_history: The logged entries (``TrainerState.log_history``); the last value of each ``eval_*``
            metric, ``reward`` and ``train_loss`` goes in the card.
        global_step: Optimizer steps taken.
        tags: The card's tags.
        model_name: The model's name (default: ``hub_model_id``, else the output folder's name).
        dataset_name: The training data's name, if it has one.
    """
    name = model_name or args.hub_model_id or os.path.basename(os.path.abspath(args.output_dir))
    base = getattr(model_config, "_name_or_path", "") or "built from a config"
    metrics = _final_metrics(log_history)
    rows = "\n".join(f"| {k} | {v:.4g} |" for k, v in sorted(metrics.items())) or "| (not evaluated yet) | |"
    hp = {
        "candidates per prompt": f"{args.num_random_samples} random (T={args.temperature}, top-k {args.top_k}), "
        f"{args.num_greedy_samples} greedy, target: {args.include_target}",
        "rank loss weight a": args.rank_loss_weight,
        "tier values": f"{args.reward_r1} / {args.reward_r2} / {args.reward_r3} / {args.reward_r4}",
        "learning rate": args.learning_rate,
        "steps": global_step,
    }
    card_data = ModelCardData(
        library_name="transformers",
        tags=sorted(set(tags)),
        base_model=base if "/" in base and not os.path.isdir(base) else None,
        datasets=[dataset_name] if dataset_name else None,
        license="apache-2.0",
    )
    text = TEMPLATE.format(
        card_data=card_data.to_yaml(),
        model_name=name,
        margin=args.speedup_margin,
        base_model=base,
        dataset=dataset_name or "slow→fast Python program pairs with unit tests",
        auto_class="AutoModelForSeq2SeqLM" if model_config.is_encoder_decoder else "AutoModelForCausalLM",
        metrics="| metric | value |\n|---|---|\n" + rows,
        hparams="\n".join(f"- {k}: {v}" for k, v in hp.items()),
        citations=CITATIONS,
    )
    path = os.path.join(args.output_dir, "README.md")
    os.makedirs(args.output_dir, exist_ok=True)
    ModelCard(text).save(path)
    return path
