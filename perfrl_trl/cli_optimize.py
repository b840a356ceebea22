"""``perfrl-trl optimize``: ask a model for a faster version of a program and print it only once it is verified."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ._cli_common import add_execution_args, execution_config, read_program, read_tests_dir

# Not from .inference (which imports torch and transformers): building the parser for any subcommand must
# stay light; inference is imported when `optimize` runs.
from .data.columns import DEFAULT_PREFIX

EXIT_FOUND, EXIT_NOT_FOUND, EXIT_ERROR = 0, 1, 2

_EPILOG = """\
Only a candidate that passes every test in --tests and is faster than PROGRAM by --margin (tier R4, a
significant difference over --trials timing runs in the sandbox; with --cost instructions, an instruction
count, under valgrind in the sandbox, at most PROGRAM's divided by --margin) is ever printed or written as
optimized.

exit status (as grep and diff):
  0  a verified faster version was found: printed with its speed-up and a diff (and written to --output)
  1  no verified faster version: the message says how the candidates failed; no program is printed
  2  error: unreadable program or tests, model that cannot be loaded, no safe sandbox, bad arguments,
     or PROGRAM fails its own tests

--json prints a single object; "found" is false and "program" / "diff" are null when nothing was verified.
"""


def add_optimize_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``optimize`` subcommand to ``perfrl-trl``'s subparsers.

    Args:
        subparsers: What ``parser.add_subparsers(...)`` returned in ``perfrl_trl.cli.build_parser``.

    Returns:
        The new subparser (its ``func`` default is :func:`cmd_optimize`).

    Example:
        ```python
        >>> import argparse
        >>> parser = argparse.ArgumentParser(prog="perfrl-trl")
        >>> p = add_optimize_parser(parser.add_subparsers(dest="command"))
        >>> args = parser.parse_args(["optimize", "slow.py", "--tests", "tests/", "--model", "ckpt/", "-n", "4"])
        >>> args.num_samples, args.func is cmd_optimize
        (4, True)
        ```
    """
    p = subparsers.add_parser(
        "optimize",
        help="sample faster versions of a program with a model; print the best one verified in the sandbox",
        description="Sample N candidate rewrites of PROGRAM with a model (the PerfRL paper's Fig. 1c), add the\n"
        "library's generic rewrites of it (unless --no-rewrites), run each against the tests, time it against\n"
        "PROGRAM in the sandbox, and print the fastest verified one and where it came from.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("program", help="the slow program (.py), reading stdin and writing stdout")
    p.add_argument("--tests", required=True, help="folder with input.N.txt / output.N.txt (PIE layout)")
    p.add_argument(
        "--model",
        default=None,
        help="checkpoint folder or Hub id (seq2seq or causal LM), or a checkpoint shipped in the package: "
        "'bundled' (a T5, the default) or 'bundled-causal' (a decoder-only model)",
    )
    p.add_argument("--tokenizer", help="tokenizer folder or Hub id (default: the model's)")
    p.add_argument("-n", "--num-samples", type=int, default=8, help="random samples to draw (default 8)")
    p.add_argument("--num-beams", type=int, default=1, help="also decode with this many beams (1: greedy)")
    p.add_argument("--no-beam", action="store_true", help="random samples only, no greedy/beam candidates")
    p.add_argument(
        "--no-rewrites",
        action="store_true",
        help="the model's candidates only, without the generic rewrites (perfrl_trl.data.rewrites)",
    )
    p.add_argument(
        "--prefix", default=DEFAULT_PREFIX, help=r"prompt prefix before the program ('\n' = newline)"
    )
    p.add_argument("--max-new-tokens", type=int, default=512, help="length limit of a candidate, in tokens")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=50)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, help="make the sampling reproducible")
    p.add_argument("--device", default="auto", help="'auto' (CUDA if available), 'cpu', 'cuda:0', ...")
    p.add_argument("--cpu-threads", type=int, help="torch threads on CPU (default: half the cores)")
    p.add_argument("-o", "--output", help="write the verified program here (nothing is written if none)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_execution_args(p)
    p.set_defaults(func=cmd_optimize)
    return p


def cmd_optimize(args: argparse.Namespace) -> int:
    """Run ``perfrl-trl optimize``; returns the exit status (0 found, 1 none found, 2 error)."""
    try:
        return _optimize(args)
    except SystemExit as exc:
        # The shared cli helpers exit with a message (status 1); here 1 means "nothing found", so errors are 2.
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
            return EXIT_ERROR
        raise


def _error(message: str) -> int:
    print(f"perfrl-trl optimize: {message}", file=sys.stderr)
    return EXIT_ERROR


def _optimize(args: argparse.Namespace) -> int:
    from .inference import optimize_program
    from .models.bundled import resolve_checkpoint

    try:
        args.model = resolve_checkpoint(args.model)  # no --model: the bundled T5; a bundled name: its folder
    except ValueError as exc:
        return _error(str(exc))

    if args.num_samples < 0 or args.num_beams < 1 or (args.num_samples == 0 and args.no_beam):
        return _error("need -n >= 0, --num-beams >= 1 and at least one candidate")
    program = read_program(args.program)
    tests = read_tests_dir(args.tests)
    config = execution_config(args)
    try:
        result = optimize_program(
            program,
            tests,
            args.model,  # loaded only after the input program has passed its tests
            args.tokenizer,
            n=args.num_samples,
            prefix=args.prefix.replace("\\n", "\n"),
            include_beam=not args.no_beam,
            num_beams=args.num_beams,
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            margin=config.margin,
            execution_config=config,
            seed=args.seed,
            cpu_threads=args.cpu_threads,
            device=None if args.device == "auto" else args.device,
            rewrites=not args.no_rewrites,
        )
    # The input fails its tests, the model cannot be loaded, bad settings, or no safe sandbox.
    except (ValueError, RuntimeError) as exc:
        return _error(str(exc))

    diff = result.diff(program, Path(args.program).name) if result.found else None
    if result.found and args.output:
        try:
            Path(args.output).write_text(result.best, encoding="utf-8")
        except OSError as exc:
            return _error(f"cannot write {args.output}: {exc}")
    if args.json:
        print(json.dumps(_to_json(result, args, diff, len(tests))))
    else:
        _print_text(result, args, diff)
    return EXIT_FOUND if result.found else EXIT_NOT_FOUND


def _to_json(result, args: argparse.Namespace, diff: str | None, n_tests: int) -> dict:
    counted = getattr(args, "cost", "cpu_time") == "instructions"
    return {
        "found": result.found,
        "message": result.message,
        "source": result.source,
        "speedup": result.speedup,
        "cost": getattr(args, "cost", "cpu_time"),
        "runtime_s": None if counted else result.runtime,
        "baseline_runtime_s": None if counted else result.baseline_runtime,
        "instructions": result.runtime if counted else None,
        "baseline_instructions": result.baseline_runtime if counted else None,
        "margin": result.margin,
        # Only a verified (R4) program is ever reported; the others are summarised without their code.
        "program": result.best if result.found else None,
        "diff": diff,
        "output": args.output if result.found and args.output else None,
        "tests": n_tests,
        "generated": result.n_generated,
        "distinct": len(result.candidates),
        "unchanged": result.n_unchanged,
        "tiers": result.tier_counts,
        "candidates": [c.summary() for c in result.candidates],
        "model": args.model,
    }


def _print_text(result, args: argparse.Namespace, diff: str | None) -> None:
    tiers = "  ".join(f"{t} {k}" for t, k in result.tier_counts.items())
    print(("FOUND  " if result.found else "NOT FOUND  ") + result.message)
    rewrites = sum(not c.from_model for c in result.candidates)
    print(
        f"candidates  {result.n_generated} generated by the model, {rewrites} more from generic rewrites, "
        f"{len(result.candidates)} distinct, {result.n_unchanged} identical to the input  [{tiers}]"
    )
    counted = getattr(args, "cost", "cpu_time") == "instructions"
    if result.baseline_runtime is not None and counted:
        print(f"input       {result.baseline_runtime:,.0f} instructions (counted, summed over tests)")
    elif result.baseline_runtime is not None:
        print(f"input       {result.baseline_runtime * 1e3:.2f} ms CPU (median of trials, summed over tests)")
    if not result.found:
        print("No candidate is shown: none was verified to pass every test and be faster by the margin.")
        return
    if counted:
        print(
            f"optimized   {result.runtime:,.0f} instructions  ->  speedup {result.speedup:.2f}x (margin {result.margin:g}x)"
        )
    else:
        print(
            f"optimized   {result.runtime * 1e3:.2f} ms CPU  ->  speedup {result.speedup:.2f}x (margin {result.margin:g}x)"
        )
    if args.output:
        print(f"written to  {args.output}")
    print(f"\n{diff}", end="" if diff.endswith("\n") else "\n")
    print("\n# ---- optimized program (verified: passes every test, faster by the margin) ----")
    print(result.best, end="" if result.best.endswith("\n") else "\n")
