"""A soak: ``nba run`` under a contact center's traffic at 70% of its measured peak for 10 minutes, a minute at a time.

Serves the demo with ``nba run`` (one worker) as ``bench.decision_server`` does, and loads it with the Python paced
client of :mod:`bench.load` on 16 connections. Each connection plays contacts one after another, each contact as a
contact center's systems send it:

1. telephony's ``contact_started`` event (``POST /v1/events``, an events key), with one of the four intents in turn;
2. the routing engine's ``POST /v1/assign`` of the contact with all the demo's agents (100) as candidates (a
   router key);
3. the agent desktop's ``POST /v1/recommend`` for the customer on the voice channel, with the intent as live
   context (a desktop key);
4. the desktop's ``POST /v1/feedback`` on that decision: the customer accepted, declined or ignored (in turn) the
   first action it returned;
5. telephony's ``contact_ended`` event (resolved, handle time);
6. the desktop's ``POST /v1/feedback`` on the assign: resolved and a CSAT.

Six requests a contact: two decisions, two events, two feedbacks. A contact is for the next of the demo's customers
in order (the 50,000 of them before any comes again). The customers' contact-policy state is cleared once before the
run, as ``bench.decision_server`` clears it, and never during it: a 10-minute run at 70% of this machine's peak plays
about 110,000 contacts, so from its fifth minute on it asks customers again, whose first answer's feedback now rests
an offer (a decline, an acceptance) and whose presentations now count, as a customer calling back would be treated.
Fewer of those recommends put an action first (the ``acted`` column: about half on the first pass, a quarter on the
second); the server's CPU a request did not fall with it (604-691 us a request across the runs of the README).

Phases: a warm-up (not measured), the peak (every connection sending as fast as its answers come), then the soak at
``--share`` (0.70) of the peak's requests per second, paced: 10 s of settling, then windows of a minute
(``--window``) back to back. After each window: the server's resident memory (``VmRSS`` of ``nba run`` and its
worker processes; its embedded Valkey's apart, since the store's data grows with the events and decisions logged, as
it should), the server's CPU a request, the share of the cores the machine's other jobs took (``/proc/stat`` less
the server, its Valkey and this process: about ±3% of noise), and the load average. The goals (issue 9):

- memory grows by less than 5% from the end of the first window (after the warm-up) to the end;
- each window's p99 is within 1.5x of the first window's;
- no errors: every answer 2xx, no decision degraded, none timed out;
- and, for the soak to have measured what it says, each window's achieved rate within 5% of the rate asked.

Prints a row per window and a PASS/FAIL line per goal; exits 1 when one fails.

    .venv/bin/python -m bench.soak [--minutes 10] [--data-dir DIR] [--redis-url URL]

With ``--redis-url`` the server uses that Redis instead of its embedded Valkey (as ``REDIS_URL`` does), and a Redis on
this machine is measured in the Valkey columns. That separates the service from its store's persistence: on a 2-core
machine the embedded Valkey's append-only-file rewrites share the cores with the server, and each one stretched the
answers of the minute it ran in (see the README's soak section).

``tests/e2e/test_soak.py`` runs the same :func:`measure` for 30 seconds against a test server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import redis
import uvloop

from bench import served
from bench.feature_server import free_port
from bench.load import Paced, Record, Reply, Window, run_paced
from features import RedisSettings
from service.keys import Role

CONNECTIONS = 16
SHARE = 0.70
MEMORY_GROWTH_GOAL = 0.05
P99_RATIO_GOAL = 1.5
RATE_TOLERANCE = 0.05
ROLES = (Role.DESKTOP, Role.ROUTER, Role.EVENTS)
INTENTS = ("billing", "technical", "cancel", "sales")
OUTCOMES = ("accepted", "declined", "ignored")
_DECISION_ID = re.compile(rb'"decision_id":"([0-9a-f]{32})"')
_FIRST_ACTION = re.compile(rb'"action_id":"([^"]+)"')


@dataclass(frozen=True)
class Target:
    """A served API to soak: where it listens, its process, a key per role of :data:`ROLES`, the world's ids."""

    host: str
    port: int
    pid: int
    keys: Mapping[Role, str]
    customers: Sequence[str]
    agents: Sequence[str]
    store_pid: int | None = None
    """The process of a Redis on this machine it is served from (``--redis-url``), measured as its embedded Valkey
    would be; None: the embedded one, a child of ``pid``, or a Redis elsewhere."""


@dataclass(frozen=True, kw_only=True)
class Plan:
    """How long each phase lasts, and the share of the peak the soak runs at."""

    warm_up_s: float
    """As fast as the answers come, not measured: the server's caches, the client's connections."""
    peak_s: float
    """As fast as the answers come: the peak, requests/s over every route."""
    settle_s: float
    """At the soak's rate before the first window, so that the peak's queues have drained when it starts."""
    window_s: float
    """Each window of the soak, back to back."""
    windows: int
    share: float
    """Of the peak's requests/s."""
    connections: int = CONNECTIONS


@dataclass(frozen=True)
class Sample:
    """One window of the soak, and the server's :class:`Usage` at its start and its end."""

    window: Window
    before: Usage
    after: Usage
    acted: float
    """The share of the window's recommends whose first action was not ``no_action`` (the costly answers)."""

    @property
    def others(self) -> float:
        """The share of the machine's cores the other jobs on it used in the window (all but the server, its store
        and the load): when p99 moves with it, the machine moved it."""
        before, after = self.before, self.after
        ours = sum(getattr(after, f) - getattr(before, f) for f in ("cpu_s", "store_cpu_s", "client_cpu_s"))
        return (after.machine_cpu_s - before.machine_cpu_s - ours) / (self.window.seconds * (os.cpu_count() or 1))

    @property
    def cpu_us(self) -> float:
        """The server's CPU per request in the window, us (its Python processes; a busy machine stretches it far
        less than it stretches latencies)."""
        return (self.after.cpu_s - self.before.cpu_s) / max(1, self.window.requests) * 1e6


@dataclass(frozen=True)
class Soak:
    """What a soak measured."""

    peak: Window
    rate: float
    """The rate asked of the soak, requests/s."""
    samples: list[Sample]
    client_cpu_us: float
    """This process's CPU per request of the soak (the load's own cost, taken from the cores the server shares)."""
    contacts: int
    """Contacts played, warm-up and peak included."""
    customers: int


@dataclass(frozen=True)
class Goal:
    """One goal's line."""

    name: str
    met: bool
    figure: str


class ContactCenter:
    """Contacts played one after another on each connection, the customers taken in order across connections."""

    def __init__(self, target: Target, run: str) -> None:
        self._target, self._run = target, run
        self.played = 0
        """Contacts begun so far (warm-up and peak included): contact ``n`` is for customer ``n`` modulo their count."""
        self._agents = list(target.agents)
        self.offers: list[tuple[float, bool]] = []
        """Each recommend answered: when it was answered, and whether its first action was an offer (not
        ``no_action``): the costly kind, whose reasons are explained."""

    async def session(self, paced: Paced, stopping: Callable[[], bool]) -> None:
        """Contacts until ``stopping()``; the one under way is finished."""
        while not stopping():
            self.played += 1
            await self._contact(paced, self.played - 1)

    async def _contact(self, paced: Paced, n: int) -> None:
        """Contact ``n``: for the ``n``-th customer (in turn), with the ``n``-th intent (in turn)."""
        keys, customer = self._target.keys, self._target.customers[n % len(self._target.customers)]
        intent, event = INTENTS[n % len(INTENTS)], f"{self._run}-{n}"
        resolved = n % 5 != 0
        started: dict[str, object] = {"type": "contact_started", "event_id": f"{event}-s", "customer_id": customer}
        await paced.post("events", "/v1/events", _json(started, intent=intent, channel="voice"), keys[Role.EVENTS])
        contact = {"customer_id": customer, "intent": intent, "channel": "voice", "language": "en"}
        assign = await paced.post("assign", "/v1/assign", _json(contact, agent_ids=self._agents), keys[Role.ROUTER])
        asked = {"customer_id": customer, "channel": "voice", "context": {"intent": intent}}
        recommend = await paced.post("recommend", "/v1/recommend", _json(asked), keys[Role.DESKTOP])
        decision, action = _DECISION_ID.search(recommend.body), _FIRST_ACTION.search(recommend.body)
        if recommend.ok and decision and action:
            self.offers.append((time.monotonic(), action[1] != b"no_action"))
            outcome = OUTCOMES[n // len(INTENTS) % len(OUTCOMES)]
            answer = {"decision_id": decision[1].decode(), "action_id": action[1].decode(), "outcome": outcome}
            await paced.post("feedback", "/v1/feedback", _json(answer), keys[Role.DESKTOP])
        ended: dict[str, object] = {"type": "contact_ended", "event_id": f"{event}-e", "customer_id": customer}
        ended |= {"intent": intent, "resolved": resolved, "transferred": n % 7 == 0, "repeat": False}
        await paced.post("events", "/v1/events", _json(ended, handle_time_s=240 + n % 300), keys[Role.EVENTS])
        if assign.ok and (decision := _DECISION_ID.search(assign.body)):
            answer = {"decision_id": decision[1].decode()}
            await paced.post(
                "feedback", "/v1/feedback", _json(answer, resolved=resolved, csat=1 + n % 5), keys[Role.DESKTOP]
            )


def _json(body: Mapping[str, object], **more: object) -> bytes:
    """``body`` and ``more`` as compact JSON."""
    return json.dumps({**body, **more}, separators=(",", ":")).encode()


def check(route: str, reply: Reply) -> str | None:
    """A 2xx decision that fell back (``degraded``) is an error of the soak too."""
    if route in ("recommend", "assign") and b'"degraded":true' in reply.body:
        return "degraded"
    return None


@dataclass(frozen=True)
class Usage:
    """Resident memory (kB) and CPU time used so far (s) of a server's processes: its Python processes (``nba run``
    and its workers) summed, and its embedded Valkey's apart; and what the machine around it was doing."""

    rss_kb: int
    store_rss_kb: int
    cpu_s: float
    store_cpu_s: float
    client_cpu_s: float
    """This process's (the load's)."""
    machine_cpu_s: float
    """Every core's busy time (``/proc/stat``): less the three above, the other jobs on the machine."""
    load: float
    """The 1-minute load average when read."""
    at: float
    """When read (``time.time()``)."""


def usage(pid: int, store_pid: int | None = None) -> Usage:
    """:class:`Usage` of ``pid`` and its descendants, and of ``store_pid`` (Linux ``/proc``: ``VmRSS``, and user +
    system time)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    rss = [0, 0]
    cpu = [0.0, 0.0]
    todo = [pid] if store_pid is None else [pid, store_pid]
    while todo:
        current = todo.pop()
        todo += children.get(current, [])
        try:
            status = Path(f"/proc/{current}/status").read_text()
            used = served.cpu_seconds(current)
        except OSError:
            continue
        store = status.split("\n", 1)[0].split(":", 1)[1].strip().startswith(("valkey", "redis"))
        found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        rss[store] += int(found[1]) if found else 0
        cpu[store] += used
    client = _cpu(resource.getrusage(resource.RUSAGE_SELF))
    return Usage(rss[0], rss[1], cpu[0], cpu[1], client, _machine_cpu_s(), os.getloadavg()[0], time.time())


def _machine_cpu_s() -> float:
    """Busy time of all cores so far: user, nice, system, irq, softirq and steal of ``/proc/stat``'s ``cpu`` line."""
    ticks = [int(t) for t in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


async def _readings(target: Target, start: float, plan: Plan) -> list[Usage]:
    """:func:`usage` at the start and at the end of each window."""
    readings = []
    for w in range(plan.windows + 1):
        await asyncio.sleep(max(0.0, start + w * plan.window_s - time.monotonic()))
        readings.append(usage(target.pid, target.store_pid))
    return readings


async def measure(target: Target, plan: Plan, run: str | None = None) -> Soak:
    """Warm up, measure the peak, then soak at ``plan.share`` of it: a settling stretch, then window by window."""
    contacts = ContactCenter(target, run or f"soak-{os.getpid()}-{time.time_ns()}")

    async def load(rate: float | None, seconds: float, record: Record | None = None) -> Record:
        return await run_paced(
            target.host,
            target.port,
            connections=plan.connections,
            rate=rate,
            seconds=seconds,
            session=contacts.session,
            check=check,
            record=record,
        )

    await load(None, plan.warm_up_s)
    peak_record = await load(None, plan.peak_s)
    started = min(peak_record.sent)
    peak = peak_record.window(started, started + plan.peak_s)
    rate = plan.share * peak.rate
    record = Record()
    start = time.monotonic() + plan.settle_s
    used = resource.getrusage(resource.RUSAGE_SELF)
    _, readings = await asyncio.gather(
        load(rate, plan.settle_s + plan.windows * plan.window_s, record), _readings(target, start, plan)
    )
    client_s = _cpu(resource.getrusage(resource.RUSAGE_SELF)) - _cpu(used)
    samples = []
    for w in range(plan.windows):
        begin, end = start + w * plan.window_s, start + (w + 1) * plan.window_s
        acted = [offer for at, offer in contacts.offers if begin <= at < end]
        share = sum(acted) / max(1, len(acted))
        samples.append(Sample(record.window(begin, end), readings[w], readings[w + 1], share))
    client_us = client_s / max(1, len(record.sent)) * 1e6
    return Soak(peak, rate, samples, client_us, contacts.played, len(target.customers))


def _cpu(used: resource.struct_rusage) -> float:
    return used.ru_utime + used.ru_stime


def goals(soak: Soak) -> list[Goal]:
    """The issue's goals on a soak, and the rate check."""
    first, rest, last = soak.samples[0], soak.samples[1:], soak.samples[-1]
    growth = last.after.rss_kb / first.after.rss_kb - 1
    ratios = [s.window.quantile_ms(0.99) / first.window.quantile_ms(0.99) for s in rest]
    errors = sum(s.window.errors for s in soak.samples)
    failures: dict[str, int] = {}
    for s in soak.samples:
        for why, count in s.window.failures.items():
            failures[why] = failures.get(why, 0) + count
    slowest = min(s.window.rate for s in soak.samples)
    fastest = max(s.window.rate for s in soak.samples)
    return [
        Goal(
            "memory",
            growth < MEMORY_GROWTH_GOAL,
            f"RSS {first.after.rss_kb / 1024:.1f} MB after window 1, {last.after.rss_kb / 1024:.1f} MB at the end: "
            f"{growth:+.1%} (goal < {MEMORY_GROWTH_GOAL:.0%})",
        ),
        Goal(
            "p99",
            max(ratios, default=1.0) <= P99_RATIO_GOAL,
            f"highest window p99 {max(ratios, default=1.0):.2f}x the first window's "
            f"({first.window.quantile_ms(0.99):.1f} ms; goal <= {P99_RATIO_GOAL}x)",
        ),
        Goal(
            "errors",
            errors == 0,
            f"{errors} of {sum(s.window.requests for s in soak.samples):,} requests"
            + (f" ({', '.join(f'{why}: {c}' for why, c in failures.items())})" if failures else ""),
        ),
        Goal(
            "rate",
            abs(slowest / soak.rate - 1) <= RATE_TOLERANCE and abs(fastest / soak.rate - 1) <= RATE_TOLERANCE,
            f"asked {soak.rate:.0f} req/s ({soak.rate / soak.peak.rate:.0%} of the peak's {soak.peak.rate:.0f}); "
            f"windows sent {slowest:.0f}-{fastest:.0f} (within {RATE_TOLERANCE:.0%})",
        ),
    ]


def _route_p99(route: str) -> Callable[[int, Sample], str]:
    """The column of ``route``'s p99."""
    return lambda i, s: f"{s.window.quantile_ms(0.99, route):.2f}"


_ROUTES = {"rec": "recommend", "asg": "assign", "evt": "events", "fbk": "feedback"}
_COLUMNS: list[tuple[str, Callable[[int, Sample], str]]] = [
    ("window", lambda i, s: f"{i}"),
    ("UTC", lambda i, s: time.strftime("%H:%M:%S", time.gmtime(s.before.at))),
    ("req/s", lambda i, s: f"{s.window.rate:.0f}"),
    ("p50 ms", lambda i, s: f"{s.window.quantile_ms(0.5):.2f}"),
    ("p99 ms", lambda i, s: f"{s.window.quantile_ms(0.99):.2f}"),
    *((f"{short} p99", _route_p99(route)) for short, route in _ROUTES.items()),
    ("errors", lambda i, s: f"{s.window.errors}"),
    ("acted", lambda i, s: f"{s.acted:.0%}"),
    ("cpu us", lambda i, s: f"{s.cpu_us:.0f}"),
    ("RSS MB", lambda i, s: f"{s.after.rss_kb / 1024:.1f}"),
    ("Valkey MB", lambda i, s: f"{s.after.store_rss_kb / 1024:.1f}"),
    ("others", lambda i, s: f"{s.others:.0%}"),
    ("load", lambda i, s: f"{s.after.load:.2f}"),
]
"""The table's columns: a window's number, start, rate, latencies (all, then each route's p99), errors, share of
recommends with an action, the server's CPU a request, memory, its Valkey's memory, the other jobs' share of the
cores, the load average at its end."""


def table(soak: Soak) -> list[str]:
    """The peak's line, a row per window, and what the load was."""
    peak = soak.peak
    rows = [[header for header, _ in _COLUMNS]]
    rows += [[cell(i, sample) for _, cell in _COLUMNS] for i, sample in enumerate(soak.samples, 1)]
    widths = [max(len(row[c]) for row in rows) for c in range(len(_COLUMNS))]
    again = f" (from contact {soak.customers:,} on, customers asked again)" if soak.contacts > soak.customers else ""
    return [
        f"peak: {peak.rate:.0f} req/s, p50 {peak.quantile_ms(0.5):.2f} ms, p99 {peak.quantile_ms(0.99):.2f} ms, "
        f"{peak.errors} errors; soak at {soak.rate:.0f} req/s",
        "peak p50 by route: " + ", ".join(f"{r} {peak.quantile_ms(0.5, r):.2f} ms" for r in sorted(peak.by_route)),
        *(" ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)) for row in rows),
        f"{soak.contacts:,} contacts for {soak.customers:,} customers in turn{again}; "
        f"the load's own CPU {soak.client_cpu_us:.0f} us a request (this process)",
    ]


def _local_pid(url: str) -> int | None:
    """The process of the Redis at ``url`` when it runs on this machine (a Unix socket or a loopback address), from
    its ``INFO``; None for one elsewhere, whose process id would name another process here."""
    where = urlsplit(url)
    if where.scheme != "unix" and where.hostname not in ("127.0.0.1", "localhost", "::1"):
        return None
    client = redis.Redis.from_url(url)
    try:
        pid = int(client.info("server")["process_id"])
    finally:
        client.close()
    return pid if Path(f"/proc/{pid}").is_dir() else None


def main() -> None:
    """Serve the demo, soak it, print the table and the goal lines; exit 1 when a goal fails."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10, help="length of the soak (windows of --window)")
    parser.add_argument("--window", type=float, default=60, help="seconds of each window")
    parser.add_argument("--share", type=float, default=SHARE, help="share of the measured peak the soak runs at")
    parser.add_argument("--data-dir", type=Path, default=None, help="serve this NBA_DATA_DIR (built on first use)")
    parser.add_argument("--workers", type=int, default=1, help="NBA_WORKERS of the server (memory: their sum)")
    parser.add_argument(
        "--redis-url",
        default=None,
        help="serve from this Redis (REDIS_URL) instead of the embedded Valkey; the demo is materialized into it "
        "if it does not hold it yet",
    )
    args = parser.parse_args()
    windows = round(args.minutes * 60 / args.window)
    if windows < 2 or not 0 < args.share <= 1 or args.workers < 1:
        sys.exit("--minutes must hold at least two windows, --share be in (0, 1] and --workers at least 1")
    plan = Plan(warm_up_s=10, peak_s=20, settle_s=10, window_s=args.window, windows=windows, share=args.share)
    with tempfile.TemporaryDirectory(prefix="nba-soak-") as tmp:
        data = args.data_dir or Path(tmp) / "data"
        data.mkdir(parents=True, exist_ok=True)
        keys = served.make_keys(data, ROLES)
        port = free_port()
        store = RedisSettings(url=args.redis_url) if args.redis_url else None
        server = served.start(data, port, args.workers, env={"REDIS_URL": args.redis_url} if store else None)
        try:
            served.wait_ready(f"http://127.0.0.1:{port}", server)
            served.clear_contact_state(data, store)
            customers, agents = served.world_ids(data / "world")
            store_pid = _local_pid(args.redis_url) if args.redis_url else None
            target = Target("127.0.0.1", port, server.pid, keys, customers, agents, store_pid)
            soak = uvloop.run(measure(target, plan))
        finally:
            served.stop(server)
    for line in table(soak):
        print(line)
    results = goals(soak)
    for goal in results:
        print(f"{'PASS' if goal.met else 'FAIL'} {goal.name}: {goal.figure}")
    if not all(goal.met for goal in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
