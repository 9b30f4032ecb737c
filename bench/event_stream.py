"""The events stream consumer in one process, against an embedded Valkey, beside the online apply alone.

The consumer's rate (read, validate, apply, archive to parquet, acknowledge) is printed beside
``OnlineStore.apply_events`` on the same events at the same batch size in the same run, so the cost the
stream and the archive add is visible whatever this machine's load. The goal for batch ingest is 20,000
events/s by one process.

    .venv/bin/python -m bench.event_stream
"""

from __future__ import annotations

import asyncio
import json
import random
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from features import EmbeddedValkey, EventArchive, EventPublisher, OnlineStore, Registry, StreamConsumer, connect
from features.events import event_adapter, to_event

EVENTS = 50_000
BATCH = 1_000
CUSTOMERS = 5_000


def _payloads(n: int, seed: int = 7) -> list[bytes]:
    """A mix of the contract's customer events over the last 60 days, as producers would send them."""
    rng = random.Random(seed)
    now = time.time()
    out = []
    for i in range(n):
        at = datetime.fromtimestamp(now - rng.uniform(0, 60 * 86_400), UTC).isoformat()
        base = {"event_id": f"b{i}", "customer_id": f"C{rng.randrange(CUSTOMERS):06d}", "occurred_at": at}
        kind = rng.choice(["login", "sentiment", "contact_ended", "payment_failed"])
        choices: dict[str, dict[str, object]] = {
            "login": {},
            "sentiment": {"score": round(rng.uniform(-1, 1), 3)},
            "contact_ended": {
                "intent": rng.choice(["billing", "technical", "cancel", "sales"]),
                "resolved": rng.random() < 0.7,
                "transferred": rng.random() < 0.2,
                "repeat": rng.random() < 0.1,
                "handle_time_s": round(rng.uniform(30, 900), 1),
            },
            "payment_failed": {"amount": round(rng.uniform(5, 200), 2)},
        }
        out.append(json.dumps({"type": kind, **base, **choices[kind]}).encode())
    return out


async def _run(url: str, root: Path) -> None:
    registry = Registry.load()
    client = connect(url, timeout_s=30)
    payloads = _payloads(EVENTS)
    try:
        adapter = event_adapter(registry)
        events = [to_event(adapter.validate_json(p), registry)[1] for p in payloads]
        baseline = OnlineStore(client, registry, namespace="apply")
        start = time.perf_counter()
        for low in range(0, EVENTS, BATCH):
            await baseline.apply_events("customer", events[low : low + BATCH])
        apply_s = time.perf_counter() - start

        publisher = EventPublisher(client, registry, namespace="stream", max_len=10 * EVENTS)
        start = time.perf_counter()
        for low in range(0, EVENTS, BATCH):
            await publisher.publish(payloads[low : low + BATCH])
        publish_s = time.perf_counter() - start

        store = OnlineStore(client, registry, namespace="stream")
        archive = EventArchive(root, registry)
        consumer = StreamConsumer(client, store, archive, registry, namespace="stream", consumer="bench", batch=BATCH)
        start = time.perf_counter()
        stats = await consumer.run(asyncio.Event(), max_entries=EVENTS)
        consume_s = time.perf_counter() - start
        assert stats.applied == EVENTS, stats
    finally:
        await client.aclose()
    print(f"publish to the stream: {EVENTS / publish_s:,.0f} events/s ({EVENTS:,} in {publish_s:.2f} s)")
    print(
        f"consume (validate, apply, archive, ack; batch {BATCH:,}): {EVENTS / consume_s:,.0f} events/s "
        f"({EVENTS:,} in {consume_s:.2f} s)  (apply_events alone: {EVENTS / apply_s:,.0f} events/s; "
        f"ratio {consume_s / apply_s:.2f}x)"
    )


def main() -> None:
    """Run against a private embedded Valkey in a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="nba-bench-") as tmp, EmbeddedValkey(Path(tmp) / "v", persist=False) as s:
        asyncio.run(_run(s.url, Path(tmp) / "world"))


if __name__ == "__main__":
    main()
