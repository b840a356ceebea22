"""``ServeConfig``: where ``perfrl-trl serve`` listens, who may call it, and how much it takes at once."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field

from ..integrations.limits import DEFAULT_MAX_PROGRAM_CHARS, DEFAULT_TIMEOUT_S

TOKEN_ENV = "PERFRL_TRL_TOKEN"


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine (``localhost``, 127.0.0.0/8, ``::1``).

    Example:
        ```python
        >>> is_loopback("127.0.0.1"), is_loopback("0.0.0.0"), is_loopback("localhost")
        (True, False, True)

        ```
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name that may resolve to anything


@dataclass
class ServeConfig:
    """Settings of the reward server.

    Safe by default: it listens on 127.0.0.1 only, and refuses any other address without a token. With a
    token, every ``POST /get_reward`` must carry it (``Authorization: Bearer <token>``, or ``?token=<token>``
    in the URL for clients that send no headers, such as OpenRLHF's).

    Args:
        host: Address to listen on.
        port: TCP port (OpenRLHF's reference reward server uses 5000).
        token: Shared secret the clients must send; default ``$PERFRL_TRL_TOKEN``. Required unless ``host``
            is a loopback address.
        max_body_bytes: Largest request body; over it: 413.
        max_queries: Most queries in one request; over it: 413.
        max_program_chars: Longer responses are not run and get R1's value.
        max_pending: Most candidates admitted and not yet judged, over all requests; a request that would go
            over it gets 503 with ``Retry-After`` (clients retry), so memory and waiting time stay bounded.
        request_timeout_s: Longest a request waits for its verdicts; candidates not judged by then get R2's
            value and ``extra_logs.timed_out = 1``, and their judgements go on into the cache, so a retry of
            the same request is answered from it. Below OpenRLHF's client timeout (180 s) by default.
        retry_after_s: The ``Retry-After`` of a 503.

    Example:
        ```python
        >>> from perfrl_trl.serve import ServeConfig
        >>> ServeConfig(port=5000).host
        '127.0.0.1'
        >>> ServeConfig(host="0.0.0.0", token="")
        Traceback (most recent call last):
        ...
        ValueError: ServeConfig.token: listening on '0.0.0.0' (not a loopback address) needs a token...

        ```
    """

    host: str = field(default="127.0.0.1", metadata={"help": "Address to listen on (loopback by default)."})
    port: int = field(default=5000, metadata={"help": "TCP port to listen on."})
    token: str | None = field(
        default=None,
        metadata={"help": f"Bearer token clients must send; default ${TOKEN_ENV}. Required off loopback."},
    )
    max_body_bytes: int = field(default=16 << 20, metadata={"help": "Largest request body (413 over it)."})
    max_queries: int = field(default=1024, metadata={"help": "Most queries in one request (413 over it)."})
    max_program_chars: int = field(
        default=DEFAULT_MAX_PROGRAM_CHARS, metadata={"help": "Longer responses are not run (R1's value)."}
    )
    max_pending: int = field(
        default=4096,
        metadata={"help": "Most candidates waiting to be judged, all requests together (503 over it)."},
    )
    request_timeout_s: float = field(
        default=DEFAULT_TIMEOUT_S, metadata={"help": "Longest a request waits for its verdicts, seconds."}
    )
    retry_after_s: int = field(default=1, metadata={"help": "Retry-After of a 503, seconds."})

    def __post_init__(self):
        if self.token is None:
            self.token = os.environ.get(TOKEN_ENV) or None
        if self.token == "":
            self.token = None
        if not isinstance(self.port, int) or not 0 < self.port < 65536:
            raise ValueError(f"ServeConfig.port must be in 1..65535, got {self.port!r}")
        for name in (
            "max_body_bytes",
            "max_queries",
            "max_program_chars",
            "max_pending",
            "request_timeout_s",
        ):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"ServeConfig.{name} must be a positive number, got {value!r}")
        if self.max_queries > self.max_pending:
            raise ValueError(
                f"ServeConfig.max_queries ({self.max_queries}) must not exceed max_pending ({self.max_pending}): "
                "a request larger than the queue could never be admitted"
            )
        if not isinstance(self.retry_after_s, int) or self.retry_after_s < 0:
            raise ValueError(
                f"ServeConfig.retry_after_s must be a whole number >= 0, got {self.retry_after_s!r}"
            )
        if self.token is not None and (
            len(self.token) < 16 or not self.token.isprintable() or " " in self.token
        ):
            raise ValueError(
                "ServeConfig.token must be at least 16 printable characters without spaces "
                '(e.g. python -c "import secrets; print(secrets.token_urlsafe())")'
            )
        if self.token is None and not is_loopback(self.host):
            raise ValueError(
                f"ServeConfig.token: listening on {self.host!r} (not a loopback address) needs a token, so "
                f"that only your trainers can use the sandbox: pass --token or set ${TOKEN_ENV}"
            )
