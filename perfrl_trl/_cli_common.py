"""Argument and input helpers shared by the ``perfrl-trl`` subcommands.

They live apart from ``cli.py`` so that ``cli.py`` -> ``cli_optimize.py`` -> here is the only direction of
import. Module level imports only the standard library (and the package's standard-library-only execution
defaults): ``score``, ``sandbox-info`` and ``register-metrics``
must start without torch or transformers, and each helper imports what it needs when called.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .execution.tiers import DEFAULT_MARGIN


def read_program(path: str) -> str:
    """The text of a program file, or exit with a message naming it.

    Args:
        path: The program's path.

    Example:
        ```python
        >>> read_program("examples/programs/fast.py").splitlines()[0]
        'n = int(input())'
        ```
    """
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SystemExit(f"perfrl-trl: cannot read program {path}: {exc}") from None


def read_tests_dir(path: str) -> list[dict]:
    """The ``{"input", "output"}`` tests of a folder in PIE layout (``input.N.txt`` / ``output.N.txt``).

    Args:
        path: The folder holding the test files.

    Example:
        ```python
        >>> len(read_tests_dir("examples/programs/tests"))
        2
        ```
    """
    from .data.pie import DataError, read_tests

    folder = Path(path).resolve()
    try:
        return read_tests(folder.parent, folder.name)
    except DataError as exc:
        raise SystemExit(f"perfrl-trl: bad --tests folder: {exc}") from None


def execution_config(args: argparse.Namespace):
    """The sandbox's ``ExecutionConfig`` from the options :func:`add_execution_args` added.

    Args:
        args: Parsed arguments with ``timeout``, ``trials``, ``margin``, ``isolation``, ``ray_address`` and
            ``cost``.

    Example:
        ```python
        >>> parser = argparse.ArgumentParser()
        >>> add_execution_args(parser)
        >>> execution_config(parser.parse_args(["--trials", "7"])).n_trials
        7
        >>> execution_config(parser.parse_args(["--cost", "instructions"])).cost
        'instructions'
        ```
    """
    from .execution import ExecutionConfig

    try:
        return ExecutionConfig(
            timeout_s=args.timeout,
            n_trials=args.trials,
            margin=args.margin,
            isolation=args.isolation,
            ray_address=getattr(args, "ray_address", None) or None,
            cost=getattr(args, "cost", "cpu_time"),
        )
    except ValueError as exc:
        raise SystemExit(f"perfrl-trl: {exc}") from None


def add_execution_args(p: argparse.ArgumentParser) -> None:
    """Add the sandbox options (``--timeout``, ``--trials``, ``--margin``, ``--isolation``, ``--cost``,
    ``--ray-address``).

    Args:
        p: The subcommand's parser.

    Example:
        ```python
        >>> parser = argparse.ArgumentParser()
        >>> add_execution_args(parser)
        >>> parser.parse_args([]).margin
        1.1
        ```
    """
    p.add_argument("--timeout", type=float, default=5.0, help="wall-clock limit per test run, seconds")
    p.add_argument("--trials", type=int, default=5, help="timed repeats over all tests")
    p.add_argument("--margin", type=float, default=DEFAULT_MARGIN, help="speed-up needed for R4")
    p.add_argument("--isolation", default="auto", choices=["auto", "bwrap", "rlimits"])
    p.add_argument(
        "--cost",
        default="cpu_time",
        choices=["cpu_time", "instructions"],
        help="what 'faster' is measured in: CPU time over repeated trials (default), or instructions counted "
        "once per test under valgrind, the same on every machine (needs valgrind; docs/cost.md)",
    )
    add_ray_address_arg(p)


def add_ray_address_arg(p: argparse.ArgumentParser) -> None:
    """Add ``--ray-address``: judge on a Ray cluster; its default is ``$RAY_ADDRESS`` (unset: this machine).

    Args:
        p: The subcommand's parser.
    """
    p.add_argument(
        "--ray-address",
        default=os.environ.get("RAY_ADDRESS") or None,
        metavar="ADDR",
        help="judge on the Ray cluster at ADDR ('auto': the one `ray start` started here); default "
        "$RAY_ADDRESS if set, else this machine's cores; '' forces this machine (needs perfrl_trl[ray])",
    )
