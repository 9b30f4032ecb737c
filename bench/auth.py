"""What the API key check costs per request, in process: :class:`~service.auth.ApiKeyGate` against no gate.

The gate is built over the service's own Litestar app (its routes decide what each request needs) in front of an
ASGI app that answers nothing, so the difference between the two loops is the gate's own work: routing the path
through Litestar's cached router, scanning the headers, hashing the key, the digest lookup, the keys file's
clock check and the token bucket. Three requests: ``POST /v1/recommend`` (a static path), ``GET
/v1/customers/{id}/features`` with a new id each time (Litestar's routing cache misses: the worst case), and a
request refused with 401 (no key).

    .venv/bin/python -m bench.auth [--requests 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from litestar.types import Message, Receive, Scope, Send

from features import EventStreamSettings, OfflineSettings, RedisSettings
from service import ServiceSettings, Settings, create_app
from service.auth import ApiKeyGate
from service.keys import KeyFile, KeyRing, Role
from service.settings import AuthSettings
from training import MlflowSettings


async def _nothing(scope: Scope, receive: Receive, send: Send) -> None:
    return None


async def _receive() -> Any:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: Message) -> None:
    return None


def _scope(method: str, path: str, key: str | None) -> dict[str, Any]:
    headers = [(b"host", b"127.0.0.1:8000"), (b"content-type", b"application/json"), (b"accept", b"*/*")]
    if key is not None:
        headers.append((b"authorization", f"Bearer {key}".encode()))
    return {"type": "http", "method": method, "path": path, "root_path": "", "headers": headers, "query_string": b""}


async def _per_request(app: Any, scopes: list[dict[str, Any]]) -> float:
    """Seconds per call of ``app`` over ``scopes`` (each a fresh copy: the gate writes into the scope)."""
    copies = [dict(s) for s in scopes]
    started = time.perf_counter()
    for scope in copies:
        await app(scope, _receive, _send)
    return (time.perf_counter() - started) / len(copies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200_000, help="requests per measurement")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nba-auth-") as tmp:
        data = Path(tmp)
        file = KeyFile(data / "keys.json")
        for role in Role:  # a realistic file: a few keys per role
            for i in range(3):
                file.create(role, f"{role.value}-{i}")
        _, key = file.create(Role.DESKTOP, "bench")
        settings = Settings(
            service=ServiceSettings(log_level="warning", model_poll_s=0),
            auth=AuthSettings(keys_file=file.path, rate_limit=1e9),
            redis=RedisSettings(url="redis://127.0.0.1:1"),  # never asked: the inner app answers nothing
            offline=OfflineSettings(data_dir=data),
            mlflow=MlflowSettings(tracking_uri=f"sqlite:///{data / 'mlflow.db'}"),
            events=EventStreamSettings(),
        )
        litestar = create_app(settings).app.app.litestar
        gate = ApiKeyGate(_nothing, litestar, KeyRing(file), rate_limit=1e9)
        n = args.requests
        read = _scope("GET", "/v1/customers/C0000000/features", key)
        cases = {
            "POST /v1/recommend, key": [_scope("POST", "/v1/recommend", key)] * n,
            "GET features, new id each, key": [{**read, "path": f"/v1/customers/C{i:07d}/features"} for i in range(n)],
            "POST /v1/recommend, no key (401)": [_scope("POST", "/v1/recommend", None)] * n,
        }
        for name, scopes in cases.items():
            best = min(
                asyncio.run(_per_request(gate, scopes)) - asyncio.run(_per_request(_nothing, scopes)) for _ in range(3)
            )
            print(f"{name}: {best * 1e6:.2f} us per request (best of 3 x {n:,})")


if __name__ == "__main__":
    main()
