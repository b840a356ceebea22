"""``perfrl-trl serve``: the command line of the reward server (``perfrl_trl.serve``)."""

from __future__ import annotations

import argparse
import dataclasses
import logging

from ._cli_common import add_execution_args, execution_config
from .serve.config import TOKEN_ENV, ServeConfig

_EPILOG = f"""examples:
  perfrl-trl serve                                   # 127.0.0.1:5000, no token needed on loopback
  {TOKEN_ENV}=$(python -c "import secrets; print(secrets.token_urlsafe())") \\
      perfrl-trl serve --host 0.0.0.0 --port 5000    # other machines: a token is required
  perfrl-trl serve --ray-address auto                # judge on a Ray cluster's CPU nodes

OpenRLHF: --reward.remote_url http://HOST:5000/get_reward?token=TOKEN (its client sends no headers);
other clients: Authorization: Bearer TOKEN. See docs/recipes/openrlhf.md."""


def cmd_serve(args: argparse.Namespace) -> int:
    from . import serve
    from .rewards import UnitTestRewardFunction

    try:
        config = ServeConfig(
            host=args.host,
            port=args.port,
            token=args.token,
            max_body_bytes=args.max_body_mb << 20,
            max_queries=args.max_queries,
            max_program_chars=args.max_program_chars,
            max_pending=args.max_pending,
            request_timeout_s=args.request_timeout,
        )
    except ValueError as exc:
        raise SystemExit(f"perfrl-trl serve: {exc}") from None
    exec_config = execution_config(args)
    if args.workers is not None:
        try:
            exec_config = dataclasses.replace(exec_config, workers=args.workers)
        except ValueError as exc:
            raise SystemExit(f"perfrl-trl serve: {exc}") from None
    if args.verbose_requests:
        logging.getLogger("perfrl_trl.serve").setLevel(logging.INFO)
    try:
        reward = UnitTestRewardFunction(execution_config=exec_config, graded=args.graded)
        serve.run(config, reward)
    except (RuntimeError, ImportError) as exc:  # no safe sandbox, no Ray, no web server, or the port is taken
        raise SystemExit(f"perfrl-trl serve: {exc}") from None
    return 0


def add_serve_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``serve`` subcommand to ``perfrl-trl``'s subparsers.

    Args:
        subparsers: What ``parser.add_subparsers(...)`` returned in ``perfrl_trl.cli.build_parser``.

    Example:
        ```python
        >>> parser = argparse.ArgumentParser(prog="perfrl-trl")
        >>> p = add_serve_parser(parser.add_subparsers(dest="command"))
        >>> args = parser.parse_args(["serve", "--port", "5001", "--workers", "2"])
        >>> args.host, args.port, args.func is cmd_serve
        ('127.0.0.1', 5001, True)

        ```
    """
    p = subparsers.add_parser(
        "serve",
        help="serve the reward over HTTP (OpenRLHF's remote reward protocol: POST /get_reward)",
        description="Judge candidates sent over HTTP in the sandbox: POST /get_reward takes OpenRLHF's\n"
        '{"query": [...], "prompts": [...], "labels": [...]} and answers {"rewards", "scores", "extra_logs"};\n'
        'a label is the JSON {"tests": [{"input", "output"}, ...], "input_code": "<program to beat>"}.',
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    defaults = ServeConfig.__dataclass_fields__
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=5000, help="TCP port (default 5000)")
    p.add_argument(
        "--token",
        default=None,
        help=f"bearer token clients must send (default ${TOKEN_ENV}); needed off loopback",
    )
    p.add_argument("--workers", type=int, default=None, help="sandbox workers (default: every usable core)")
    p.add_argument("--graded", action="store_true", help="grade R4 by the measured speed-up")
    p.add_argument(
        "--max-body-mb", type=int, default=defaults["max_body_bytes"].default >> 20, help="largest body, MiB"
    )
    p.add_argument(
        "--max-queries", type=int, default=defaults["max_queries"].default, help="most queries a request"
    )
    p.add_argument(
        "--max-program-chars",
        type=int,
        default=defaults["max_program_chars"].default,
        help="longer responses are not run (R1)",
    )
    p.add_argument(
        "--max-pending",
        type=int,
        default=defaults["max_pending"].default,
        help="most candidates waiting over all requests; beyond: 503 + Retry-After",
    )
    p.add_argument(
        "--request-timeout",
        type=float,
        default=defaults["request_timeout_s"].default,
        help="seconds a request waits for its verdicts; later ones get R2 and extra_logs.timed_out",
    )
    p.add_argument("--verbose-requests", action="store_true", help="log one line per request")
    add_execution_args(p)
    p.set_defaults(func=cmd_serve)
    return p
