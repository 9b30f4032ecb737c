"""The read connection (:class:`features.resp.Pipeline`) against a real server: replies reach the request that
asked, whatever fails around it, and the connection obeys the URL's database and credentials."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

import pytest
import redis
import redis.asyncio

from features import OnlineStore, OnlineStoreUnavailable, Registry
from features.resp import Pipeline, command

NS = "resp"


def _with(url: str, *, db: int | None = None, user: str | None = None, password: str | None = None) -> str:
    """``url`` with a database number and credentials (a unix URL takes the database as a query)."""
    parts = urlsplit(url)
    credentials = f"{user}:{password}@" if user is not None else ""
    if parts.scheme == "unix":
        return f"unix://{credentials}{parts.path}" + (f"?db={db}" if db is not None else "")
    return f"{parts.scheme}://{credentials}{parts.hostname}:{parts.port}" + (f"/{db}" if db is not None else "")


async def _get(pipeline: Pipeline, key: str) -> object:
    (reply,) = await pipeline.exchange(command(b"GET", [key.encode()]), 1)
    return reply


def _pipeline_run(url: str, body: object) -> object:
    async def main() -> object:
        client = redis.asyncio.Redis.from_url(url, socket_timeout=0.3)
        pipeline = Pipeline.of(client)
        try:
            return await body(pipeline)  # type: ignore[operator]
        finally:
            await pipeline.aclose()
            await client.aclose()

    return asyncio.run(main())


@pytest.fixture
def keys(redis_client: redis.Redis) -> redis.Redis:
    """Ten keys k0..k9 holding v0..v9."""
    redis_client.mset({f"k{i}": f"v{i}" for i in range(10)})
    return redis_client


def test_concurrent_requests_each_get_their_own_replies(keys: redis.Redis, redis_url: str) -> None:
    async def body(pipeline: Pipeline) -> list[object]:
        return list(await asyncio.gather(*(_get(pipeline, f"k{i % 10}") for i in range(500))))

    assert _pipeline_run(redis_url, body) == [f"v{i % 10}".encode() for i in range(500)]


def test_a_cancelled_request_leaves_the_others_in_step(keys: redis.Redis, redis_url: str) -> None:
    """Its replies still arrive; they are read and dropped, not handed to whoever asked next."""

    async def body(pipeline: Pipeline) -> list[object]:
        await _get(pipeline, "k0")  # connected
        doomed = asyncio.ensure_future(_get(pipeline, "k1"))
        await asyncio.sleep(0)  # written on this turn
        doomed.cancel()
        return [await _get(pipeline, f"k{i}") for i in (2, 3, 4)]

    assert _pipeline_run(redis_url, body) == [b"v2", b"v3", b"v4"]


def test_an_error_reply_fails_its_request_alone(keys: redis.Redis, redis_url: str) -> None:
    keys.hset("a-hash", "f", "1")

    async def body(pipeline: Pipeline) -> list[object]:
        return list(await asyncio.gather(*(_get(pipeline, k) for k in ("k5", "a-hash", "k6")), return_exceptions=True))

    first, broken, last = _pipeline_run(redis_url, body)  # type: ignore[misc]
    assert (first, last) == (b"v5", b"v6")
    assert isinstance(broken, redis.ResponseError)
    assert "WRONGTYPE" in str(broken)


def test_a_server_that_stops_answering_times_out_and_the_next_request_reconnects(
    keys: redis.Redis, redis_url: str
) -> None:
    """Paused for 1 s with a 0.3 s timeout: the waiting request fails quickly; once the server answers again a
    new connection serves the right reply (the late reply of the old one is never taken for it)."""

    async def body(pipeline: Pipeline) -> tuple[float, str, object]:
        await _get(pipeline, "k0")
        keys.execute_command("CLIENT", "PAUSE", 1000, "ALL")
        start = time.perf_counter()
        try:
            await _get(pipeline, "k1")
        except TimeoutError as exc:
            failure = str(exc)
        waited = time.perf_counter() - start
        await asyncio.sleep(1.0)
        return waited, failure, await _get(pipeline, "k2")

    waited, failure, after = _pipeline_run(redis_url, body)  # type: ignore[misc]
    assert waited < 0.9
    assert "no reply from Redis within 0.3 s" in failure
    assert after == b"v2"


def test_a_connection_the_server_closes_is_opened_again(keys: redis.Redis, redis_url: str) -> None:
    async def body(pipeline: Pipeline) -> list[object]:
        first = await _get(pipeline, "k3")
        keys.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        await asyncio.sleep(0.1)  # the close reaches the connection
        return [first, await _get(pipeline, "k4")]

    assert _pipeline_run(redis_url, body) == [b"v3", b"v4"]


def test_the_database_in_the_url_is_selected(keys: redis.Redis, redis_url: str) -> None:
    other = redis.Redis.from_url(_with(redis_url, db=3))
    try:
        other.set("k0", "in-db-3")
        assert _pipeline_run(_with(redis_url, db=3), lambda p: _get(p, "k0")) == b"in-db-3"
        assert _pipeline_run(redis_url, lambda p: _get(p, "k0")) == b"v0"
    finally:
        other.flushdb()
        other.close()


def test_credentials_in_the_url_are_sent_and_a_wrong_password_is_refused(
    keys: redis.Redis, redis_url: str, registry: Registry
) -> None:
    keys.execute_command("ACL", "SETUSER", "reader", "on", ">s3cret", "~*", "+@all")
    try:
        assert _pipeline_run(_with(redis_url, user="reader", password="s3cret"), lambda p: _get(p, "k7")) == b"v7"

        async def read(url: str) -> None:
            client = redis.asyncio.Redis.from_url(url)
            store = OnlineStore(client, registry, namespace=NS)
            try:
                await store.read("C000001")
            finally:
                await store.aclose()
                await client.aclose()

        with pytest.raises(OnlineStoreUnavailable, match="AuthenticationError: invalid username-password"):
            asyncio.run(read(_with(redis_url, user="reader", password="wrong")))
    finally:
        keys.execute_command("ACL", "DELUSER", "reader")


def test_a_client_kept_across_event_loops_reconnects_on_the_new_one(keys: redis.Redis, redis_url: str) -> None:
    """``asyncio.run`` twice with one pipeline: the first loop's connection is gone, the second opens its own."""
    pipeline = Pipeline.of(redis.asyncio.Redis.from_url(redis_url))
    assert asyncio.run(_get(pipeline, "k8")) == b"v8"
    assert asyncio.run(_get(pipeline, "k9")) == b"v9"
