"""``serve(settings)``: the API on granian, one worker process, as ``nba run`` and ``make bench`` serve it.

Granian parses HTTP and writes responses in Rust and hands Litestar a plain ASGI call, where uvicorn runs its
protocol, flow control and response bookkeeping in Python on the same core as our handlers: ``make bench``
prints the read on both, and a hello-world app beside it. The app is built inside the worker (the target
loader), so its lifespan (the redaction filter, the models, the Redis client) runs where requests are served.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from granian.constants import Interfaces, Loops
from granian.log import LogLevels
from granian.server import Server
from litestar import Litestar

from features import Registry
from service.app import create_app
from service.settings import Settings

ACCESS_LOG_FORMAT = '%(addr)s - "%(method)s %(path)s %(protocol)s" %(status)d %(dt_ms).1f ms'
"""One line per request, like uvicorn's; the path only (a query string may carry an identifier)."""

STOP_TIMEOUT_S = 30
"""How long a stop waits for the worker to finish its requests and lifespan before killing it: never a hang."""


def serve_app(
    build: Callable[[], Litestar], *, host: str, port: int, log_level: str = "info", access_log: bool = True
) -> None:
    """Serve the app ``build`` returns until SIGINT or SIGTERM; one worker, the ASGI interface with lifespan."""
    Server(
        "service.app:create_app",  # named for granian's logs; the app comes from ``build``
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=1,
        loop=Loops.uvloop,
        log_level=LogLevels(log_level),
        log_access=access_log,
        log_access_format=ACCESS_LOG_FORMAT,
        workers_kill_timeout=STOP_TIMEOUT_S,
    ).serve(target_loader=build, wrap_loader=False)


def serve(settings: Settings, registry: Registry | None = None, *, access_log: bool = True) -> None:
    """Serve ``create_app(settings, registry)`` on ``settings.service.host:port``."""
    serve_app(
        partial(create_app, settings, registry),
        host=settings.service.host,
        port=settings.service.port,
        log_level=settings.service.log_level,
        access_log=access_log,
    )
