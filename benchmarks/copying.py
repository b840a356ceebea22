"""Can a model copy its input? The skill a program-rewriting model needs first, measured two ways.

1. **Which architecture learns to copy on a CPU budget** (`--archs`): a fresh `small` model of each family
   (`perfrl_trl.models.build_model`) is trained, one after another in this process with the same seed,
   batches and optimizer (AdamW, lr 1e-3, batch 16), to copy random token sequences (`--length` tokens drawn
   from `--alphabet` ids): a T5 reads the sequence and writes it; a decoder-only model reads `x EOS` and
   writes `x` (the loss on the copy only, as SFT lays out a prompt and its program). The loss starts near
   ln(vocabulary) = 9.0, drops to ln(alphabet) = 6.9 once the model has learnt which ids occur, and falls to 0
   only once it copies: random tokens leave nothing else to guess from. Reported every `--log_every` steps
   with the seconds taken.
2. **How well a trained model copies real programs** (`--probe FOLDER ...`): each model is given the first
   `--programs` distinct slow programs of PIE's evaluation half (`../shared/pie`, at most 200 tokens; an
   evaluation, so reading that half is allowed) followed by EOS, as the denoising stage's copy batches are,
   and decodes greedily; reported: exact copies and the mean `difflib` similarity of the output to the
   program.

Usage:
    python benchmarks/copying.py --archs t5 decoder --steps 600          # ~5 min on 2 cores
    python benchmarks/copying.py --probe outputs/pretrain_checkpoint-real/denoise --programs 20
    python benchmarks/copying.py --archs t5 decoder --out benchmarks/results/copying.json
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import time

import torch

from perfrl_trl.models import build_model, load_model_and_tokenizer, load_tokenizer


def copy_race(arch: str, steps: int, length: int, alphabet: int, log_every: int, seed: int) -> list[dict]:
    """Train a fresh small `arch` model to copy random sequences; the loss every `log_every` steps."""
    torch.manual_seed(seed)
    tok = load_tokenizer()
    model = build_model(arch, "small", tok)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    low = 200  # clear of the special tokens
    gen = torch.Generator().manual_seed(seed)  # the same batches for every architecture
    curve, started = [], time.monotonic()
    for step in range(1, steps + 1):
        x = torch.randint(low, low + alphabet, (16, length), generator=gen)
        eos = torch.full((16, 1), tok.eos_token_id)
        if model.config.is_encoder_decoder:
            loss = model(input_ids=torch.cat([x, eos], 1), labels=torch.cat([x, eos], 1)).loss
        else:
            seq = torch.cat([x, eos, x, eos], 1)
            labels = seq.clone()
            labels[:, : length + 1] = -100  # the loss on the copy only
            loss = model(input_ids=seq, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step % log_every == 0 or step == 1:
            curve.append(
                {"step": step, "loss": round(loss.item(), 4), "seconds": round(time.monotonic() - started, 1)}
            )
            print(
                f"{arch:8s} step {step:5d}  loss {loss.item():.3f}  {curve[-1]['seconds']:.0f} s", flush=True
            )
    return curve


def pie_programs(pie_dir: str, n: int, tokenizer, max_tokens: int = 200) -> list[str]:
    """The first `n` distinct slow programs of PIE's evaluation half of at most `max_tokens` tokens."""
    from perfrl_trl.data.pie import read_pairs, split_of

    programs: list[str] = []
    for _, row in read_pairs(os.path.join(pie_dir, "py_test_pairs.jsonl")):
        code = row["input"]
        if split_of(row["problem_id"]) != "eval" or code in programs:
            continue
        if len(tokenizer(code, add_special_tokens=False, split_special_tokens=True).input_ids) <= max_tokens:
            programs.append(code)
        if len(programs) == n:
            break
    return programs


def probe(folder: str, pie_dir: str, n: int) -> dict:
    """Greedy copies of PIE programs by the model in `folder`: exact ones and the mean similarity."""
    model, tok = load_model_and_tokenizer(folder)
    model.eval()
    programs = pie_programs(pie_dir, n, tok)
    exact, ratios = 0, []
    for code in programs:
        ids = tok(code, add_special_tokens=False, split_special_tokens=True).input_ids + [tok.eos_token_id]
        x = torch.tensor([ids])
        with torch.no_grad():
            out = model.generate(
                x, attention_mask=torch.ones_like(x), max_new_tokens=len(ids) + 10, do_sample=False
            )[0]
        text = tok.decode(
            out if model.config.is_encoder_decoder else out[len(ids) :], skip_special_tokens=True
        )
        exact += text.strip() == code.strip()
        ratios.append(difflib.SequenceMatcher(None, text, code).ratio())
    return {
        "model": folder,
        "programs": len(programs),
        "exact": exact,
        "mean_similarity": sum(ratios) / len(ratios),
    }


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--archs", nargs="*", default=[], choices=["t5", "decoder"])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--length", type=int, default=32, help="Tokens per random sequence.")
    parser.add_argument("--alphabet", type=int, default=1000, help="Distinct token ids drawn from.")
    parser.add_argument("--log_every", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--probe", nargs="*", default=[], metavar="FOLDER")
    parser.add_argument("--programs", type=int, default=20)
    parser.add_argument("--pie_dir", default=os.path.join("..", "shared", "pie"))
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if not args.archs and not args.probe:
        parser.error("give --archs, --probe or both")
    if args.probe and not os.path.isfile(os.path.join(args.pie_dir, "py_test_pairs.jsonl")):
        parser.error(f"--probe needs PIE in --pie_dir; {args.pie_dir} has no py_test_pairs.jsonl")

    result = {
        "settings": {k: v for k, v in vars(args).items() if k not in ("out",)},
        "threads": torch.get_num_threads(),
    }
    result["race"] = {
        arch: copy_race(arch, args.steps, args.length, args.alphabet, args.log_every, args.seed)
        for arch in args.archs
    }
    result["probe"] = [probe(folder, args.pie_dir, args.programs) for folder in args.probe]
    for arch, curve in result["race"].items():
        print(f"{arch}: loss {curve[0]['loss']:.3f} -> {curve[-1]['loss']:.3f} in {curve[-1]['step']} steps, "
              f"{curve[-1]['seconds']:.0f} s")  # fmt: skip
    for p in result["probe"]:
        print(
            f"{p['model']}: {p['exact']}/{p['programs']} exact copies, mean similarity {p['mean_similarity']:.3f}"
        )
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(result, fh, indent=1)


if __name__ == "__main__":
    main()
