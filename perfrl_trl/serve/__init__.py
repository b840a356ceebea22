"""``perfrl-trl serve``: the unit-test reward over HTTP, in OpenRLHF's remote-reward protocol.

``ServeConfig`` needs only the standard library; serving needs the ``serve`` extra
(``pip install 'perfrl_trl[serve]'``: Starlette and uvicorn), imported when :func:`run` is called.
"""

from __future__ import annotations

import logging

from .config import TOKEN_ENV, ServeConfig, is_loopback

__all__ = ["TOKEN_ENV", "ServeConfig", "is_loopback", "run"]

logger = logging.getLogger(__name__)

INSTALL_HINT = "perfrl-trl serve needs a web server: pip install 'perfrl_trl[serve]'"


def run(config: ServeConfig, reward=None, log_level: str = "warning") -> None:
    """Serve ``reward`` on ``config.host:config.port`` until SIGINT or SIGTERM (then finish what is in flight).

    The sandbox starts before the port opens, so a machine without a safe sandbox fails here, and a client
    that gets an answer from ``GET /health`` can be judged at once.

    Args:
        config: Address, token and limits.
        reward: A :class:`~perfrl_trl.UnitTestRewardFunction` (its values, graded bonus and executor: the local
            pool, or Ray with ``ExecutionConfig.ray_address``); default: one with default settings.
        log_level: uvicorn's log level; request lines are logged by ``perfrl_trl.serve.app`` at INFO.

    Raises:
        ImportError: without the ``serve`` extra, saying how to install it.
    """
    try:
        import uvicorn

        from .app import create_app
    except ImportError as exc:
        raise ImportError(f"{INSTALL_HINT} ({exc})") from None
    from ..rewards import UnitTestRewardFunction

    reward = reward or UnitTestRewardFunction()
    executor = reward.executor  # starts the sandbox workers (or connects to Ray) before the port opens

    class _Server(uvicorn.Server):
        async def startup(self, sockets=None) -> None:
            await super().startup(sockets)
            if self.started:
                ray = executor.config.ray_address
                where = f"Ray at {ray}" if ray else f"{executor.config.num_workers} local workers"
                print(
                    f"perfrl-trl serve: listening on http://{config.host}:{config.port} "
                    f"(POST /get_reward, GET /health; isolation {executor.isolation}, {where}; "
                    f"token {'required' if config.token else 'off'})",
                    flush=True,
                )

    server = _Server(
        uvicorn.Config(
            create_app(reward, config),
            host=config.host,
            port=config.port,
            log_level=log_level,
            # The token may travel in the URL (?token=): uvicorn's access log would write it out.
            access_log=False,
            # In-flight requests end by their own deadline; waiting a little longer lets them answer.
            timeout_graceful_shutdown=int(config.request_timeout_s) + 5,
        )
    )
    server.run()
    if not server.started:
        raise RuntimeError(f"could not listen on {config.host}:{config.port} (see the log above)")
