"""``perfrl-trl``: command-line entry points, each a thin call into the library."""

from __future__ import annotations

import argparse
import json
import logging
import sys

# Both import only the standard library at module level: each command imports its own dependencies when it
# runs, so `score`, `sandbox-info` and `register-metrics` never load torch or transformers.
from ._cli_common import (
    add_execution_args,
    add_ray_address_arg,
    execution_config,
    read_program,
    read_tests_dir,
)
from .cli_optimize import add_optimize_parser
from .cli_serve import add_serve_parser


def cmd_score(args: argparse.Namespace) -> int:
    from .rewards import UnitTestRewardFunction

    program = read_program(args.program)
    baseline = read_program(args.baseline) if args.baseline else None
    tests = read_tests_dir(args.tests)
    try:
        reward = UnitTestRewardFunction(execution_config=execution_config(args), graded=args.graded)
        details = reward.score([program], [tests], [baseline] if baseline is not None else None)[0]
    except (RuntimeError, ImportError) as exc:  # no safe sandbox here, or no Ray cluster (or Ray) to judge on
        raise SystemExit(f"perfrl-trl: {exc}") from None
    counted = details.cost == "instructions"
    result = {
        "tier": details.tier,
        "reward": details.reward,
        "passed": details.passed,
        "status": details.status,
        "tests_passed": details.n_passed,
        "tests": details.n_tests,
        "cost": details.cost,
        "counter": details.counter,
        "runtime_s": None if counted else details.runtime,
        "baseline_runtime_s": None if counted else details.baseline_runtime,
        "instructions": details.runtime if counted else None,
        "baseline_instructions": details.baseline_runtime if counted else None,
        "speedup": details.speedup,
        "error": details.error,
        "isolation": details.isolation,
    }
    if args.json:
        print(json.dumps(result))
    else:
        speed = f"{details.speedup:.2f}x" if details.speedup is not None else "n/a"
        print(f"tier       {details.tier}  (reward {details.reward:g})")
        print(f"tests      {details.n_passed}/{details.n_tests} passed  [{details.status}]")
        if counted and details.runtime is not None:
            print(f"instrs     {details.runtime:,.0f} (counted by {details.counter}, summed over tests)")
        elif details.runtime is not None:
            print(f"cpu time   {details.runtime * 1e3:.2f} ms (median of trials, summed over tests)")
        if counted and details.baseline_runtime is not None:
            print(f"baseline   {details.baseline_runtime:,.0f} instructions   speedup {speed}")
        elif details.baseline_runtime is not None:
            print(f"baseline   {details.baseline_runtime * 1e3:.2f} ms   speedup {speed}")
        if details.error:
            print(f"error      {details.error}")
        print(f"isolation  {details.isolation}")
    return 0


def sandbox_info() -> dict:
    """The isolation level this machine offers, and which bubblewrap (what ``sandbox-info`` prints)."""
    import os

    from .execution import resolve_isolation
    from .execution.sandbox import drop_uid_for_rlimits, find_bwrap

    try:
        level = resolve_isolation("auto")
    except RuntimeError as exc:
        level = f"none ({exc})"
    bwrap = find_bwrap()
    info = {
        "isolation": level,
        "bwrap_available": bwrap.path is not None,
        "bwrap": bwrap.path,
        "bwrap_source": bwrap.source,
        "bwrap_problems": list(bwrap.problems),
    }
    if level == "rlimits":
        uid = drop_uid_for_rlimits()
        info["runs_as_uid"] = os.geteuid() if uid is None else uid
    return info


def cmd_sandbox_info(args: argparse.Namespace) -> int:
    if args.ray_address:
        # Every node of the cluster, each probed where it runs: the level a Ray actor there would judge at.
        from .execution.ray_backend import cluster_sandbox_info

        try:
            info = cluster_sandbox_info(args.ray_address, sandbox_info)
        except (RuntimeError, ImportError) as exc:
            raise SystemExit(f"perfrl-trl: {exc}") from None
    else:
        info = sandbox_info()
    print(json.dumps(info))
    return 0


def cmd_register_metrics(args: argparse.Namespace) -> int:
    from .metrics import register_metrics

    path = register_metrics(force=args.force)
    print(f"registered perfrl/speedup at {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="perfrl-trl", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("score", help="score a program against tests (and a baseline) in the sandbox")
    p.add_argument("--program", required=True, help="the candidate program (.py)")
    p.add_argument("--baseline", help="the slow program to compare speed against (.py)")
    p.add_argument("--tests", required=True, help="folder with input.N.txt / output.N.txt (PIE layout)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--graded", action="store_true", help="grade R4 by the measured speed-up")
    add_execution_args(p)
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("sandbox-info", help="print the isolation level this machine (or each Ray node) has")
    add_ray_address_arg(p)
    p.set_defaults(func=cmd_sandbox_info)

    p = sub.add_parser("register-metrics", help="make evaluate.load('perfrl/speedup') work offline")
    p.add_argument("--force", action="store_true", help="rewrite the cached module even if present")
    p.set_defaults(func=cmd_register_metrics)

    add_optimize_parser(sub)
    add_serve_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
