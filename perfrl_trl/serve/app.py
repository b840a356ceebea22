"""The reward server's ASGI application: ``POST /get_reward`` (OpenRLHF's protocol) and ``GET /health``.

Importing this module needs the ``serve`` extra (Starlette); ``perfrl_trl.serve.run`` says so when it is
missing.

Every candidate of an admitted request is submitted to the executor at once, and the request then waits on
its own futures, in query order: a verdict can only ever reach the request that asked for it. The judgements
do not depend on the request that started them: a client that disconnects, or a request past its deadline,
leaves its judgements running to the end, into the verdict cache (where the client's retry finds them), and
their places in the queue are given back only when they finish, so the bound on pending work holds.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import threading
import time
from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..integrations.protocol import RequestError, answer, parse_request, submit_samples
from ..rewards import UnitTestRewardFunction
from .config import ServeConfig

logger = logging.getLogger(__name__)


class _Admission:
    """Counts candidates admitted and not yet judged, against ``limit`` (thread-safe: futures finish on the
    executor's threads)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.pending = 0
        self.peak = 0
        self._lock = threading.Lock()

    def try_admit(self, n: int) -> bool:
        with self._lock:
            if self.pending + n > self.limit:
                return False
            self.pending += n
            self.peak = max(self.peak, self.pending)
            return True

    def release(self, n: int = 1) -> None:
        with self._lock:
            self.pending -= n


def _error(status: int, field: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": f"{field}: {message}", "field": field}, status_code=status, headers=headers)


class RewardService:
    """The state behind the routes: the reward (and its executor), the admission count, counters.

    Args:
        reward: Judges the candidates; its executor (local pool or Ray) and verdict cache are shared by all
            requests.
        config: Limits and the token.
    """

    def __init__(self, reward: UnitTestRewardFunction, config: ServeConfig):
        self.reward, self.config = reward, config
        self.admission = _Admission(config.max_pending)
        self.counters = {
            "requests": 0,
            "answered": 0,
            "candidates": 0,
            "timed_out": 0,
            "busy": 0,
            "unauthorized": 0,
            "bad_request": 0,
        }
        self._token = config.token.encode() if config.token else None

    def _count(self, name: str, n: int = 1) -> None:
        self.counters[name] += n  # only ever touched on the event loop

    def authorized(self, request: Request) -> bool:
        if self._token is None:
            return True
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given:
            given = request.query_params.get("token", "")
        return hmac.compare_digest(given.strip().encode(), self._token)

    async def _read_body(self, request: Request) -> bytes:
        limit = self.config.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise RequestError("content-length", f"must be a whole number, got {declared[:40]!r}")
            if int(declared) > limit:
                raise RequestError("body", f"{declared} bytes, over the limit of {limit}", 413)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestError("body", f"over the limit of {limit} bytes", 413)
            chunks.append(chunk)
        return b"".join(chunks)

    async def get_reward(self, request: Request) -> Response:
        self._count("requests")
        if not self.authorized(request):
            self._count("unauthorized")
            return _error(401, "authorization", "missing or wrong token", {"WWW-Authenticate": "Bearer"})
        start = time.monotonic()
        try:
            raw = await asyncio.wait_for(self._read_body(request), self.config.request_timeout_s)
            try:
                body = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as exc:
                raise RequestError("body", f"not valid JSON ({exc})"[:300]) from None
            samples = parse_request(body, self.config.max_queries, self.config.max_program_chars)
        except RequestError as exc:
            self._count("bad_request")
            return _error(exc.status, exc.field, exc.message)
        except asyncio.TimeoutError:
            self._count("bad_request")
            return _error(408, "body", f"not received within {self.config.request_timeout_s:g} s")
        except ClientDisconnect:
            return Response(status_code=400)  # nobody is left to read it
        n_run = sum(not s.too_long for s in samples)
        if not self.admission.try_admit(n_run):
            self._count("busy")
            return _error(
                503,
                "query",
                f"the server is judging {self.admission.pending} candidates (at most {self.config.max_pending}): "
                "retry later",
                {"Retry-After": str(self.config.retry_after_s)},
            )
        try:
            futures = submit_samples(self.reward, samples)
        except BaseException:
            self.admission.release(n_run)
            raise
        for fut in futures:
            if fut is not None:
                fut.add_done_callback(lambda _: self.admission.release(1))
        verdicts = await self._wait(futures)
        self._count("answered")
        self._count("candidates", len(samples))
        timed_out = sum(v is None and not s.too_long for s, v in zip(samples, verdicts))
        self._count("timed_out", timed_out)
        logger.info(
            "POST /get_reward: %d candidates in %.3f s (%d past the deadline)",
            len(samples),
            time.monotonic() - start,
            timed_out,
        )
        return JSONResponse(answer(self.reward, samples, verdicts))

    async def _wait(self, futures: Sequence) -> list:
        """The verdicts in query order, ``None`` for those not run or not done by the deadline.

        Cancelling this wait (the client went away) leaves the judgements running: ``asyncio.wait`` never
        cancels what it waits for.
        """
        running = [asyncio.wrap_future(f) for f in futures if f is not None]
        if running:
            await asyncio.wait(running, timeout=self.config.request_timeout_s)
        return [f.result() if f is not None and f.done() else None for f in futures]

    async def health(self, request: Request) -> Response:
        info: dict = {"status": "ok"}
        if self.authorized(request):
            executor = self.reward.executor
            info.update(
                isolation=executor.isolation,
                workers=executor.config.num_workers if executor.config.ray_address is None else None,
                ray_address=executor.config.ray_address,
                pending=self.admission.pending,
                peak_pending=self.admission.peak,
                max_pending=self.config.max_pending,
                requests=dict(self.counters),
                executor=dict(executor.stats),
            )
        return JSONResponse(info)


def create_app(reward: UnitTestRewardFunction, config: ServeConfig) -> Starlette:
    """The ASGI app serving ``reward`` under ``config``'s limits (run it with any ASGI server).

    Args:
        reward: Judges the candidates.
        config: Limits and the token (``host`` and ``port`` are the ASGI server's business).

    Example:
        ```python
        import uvicorn
        from perfrl_trl.rewards import UnitTestRewardFunction
        from perfrl_trl.serve import ServeConfig
        from perfrl_trl.serve.app import create_app

        uvicorn.run(create_app(UnitTestRewardFunction(), ServeConfig()), host="127.0.0.1", port=5000)
        ```
    """
    service = RewardService(reward, config)
    app = Starlette(
        routes=[
            Route("/get_reward", service.get_reward, methods=["POST"]),
            Route("/health", service.health, methods=["GET"]),
        ]
    )
    app.state.service = service
    return app
