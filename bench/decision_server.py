"""The decisions over HTTP: recommend and assign against the same server's ``/health``, in one run.

Starts ``nba run`` exactly as ``make run`` does (one uvicorn worker; it builds the demo world, the online
store and the champion models in a temporary ``NBA_DATA_DIR`` first), then loads it with wrk at 16 connections:

- ``/health``: what the server and the framework cost alone, the same-run baseline;
- ``POST /v1/recommend``, each request for the next of the demo's customers in turn, voice channel: every one of
  them (20,000) before any comes again, so a run of ~10,000 requests asks each customer at most once, as a contact
  center's calls would; nothing is cached. The warm-up asks customers from the other end of the list, and the
  customers' contact-policy state (presentations, declines) is cleared before each recommend run: a customer asked
  two or three times within days has their offers capped by the catalog's contact policies, and a recommend with
  no offer to explain costs less than the first recommend of a call (asking 2,000 customers in turn, as this
  benchmark did before, measured mostly capped customers after the first pass);
- ``POST /v1/assign`` with all 100 demo agents as candidates, a billing contact in English, customers in turn.

Then it restarts the server with ``NBA_WORKERS=2`` and then 4 (``--workers``) on the same data and measures
``/health`` and recommend again: how throughput scales with workers on this machine's cores (wrk itself takes
one of them).

The issue's goals: recommend at >= 40% of ``/health``'s requests per second with p99 <= 5 ms and no errors;
assign with 100 candidates at p99 <= 10 ms; more workers scale with the cores. Each line also gives the server's
CPU per request (``/proc``, one worker), which a busy machine stretches far less than it stretches requests per
second, and the load average when it was taken (other jobs on the machine move every figure: compare ratios taken
in one run, and repeat).

    .venv/bin/python -m bench.decision_server [--seconds 10] [--workers 2,4] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench import served
from bench.feature_server import free_port, wrk
from service.keys import Role

WARM_UP_CUSTOMERS = 2_000
CONNECTIONS = 16
RECOMMEND_SHARE_GOAL = 0.40
RECOMMEND_P99_GOAL_MS = 5.0
ASSIGN_P99_GOAL_MS = 10.0
_FIGURES = re.compile(r"(\S+) c\d+: ([\d.]+) rps p50 [\d.]+ ms p99 ([\d.]+) ms non2xx (\d+)")

# ``first`` and ``step`` place a thread in the rotation: with several threads, a ``setup`` (bench.scale_out's) gives
# each its own offset and the thread count as the step, so together they still ask each body once per pass.
_ROTATE = """
local bodies = {%s}
first, step = 0, 1
local i = nil
request = function()
  i = i and i + step or first
  return wrk.format("POST", "%s", {["Content-Type"] = "application/json", ["Authorization"] = "Bearer %s"},
                    bodies[(i %% #bodies) + 1])
end
"""


def _script(path: Path, route: str, bodies: list[dict[str, object]], key: str, *, setup: str = "") -> Path:
    """A wrk script that POSTs ``bodies`` to ``route`` in turn, each with ``key``; ``setup``: Lua appended to it
    (a ``setup(thread)`` function that spreads wrk's threads over servers)."""
    quoted = ",\n".join("[[" + json.dumps(b) + "]]" for b in bodies)
    path.write_text(_ROTATE % (quoted, route, key) + setup)
    return path


@dataclass(frozen=True)
class Workload:
    """The request bodies of a run, from the demo world's tables: recommend over every customer in turn (voice),
    assign of a billing contact in English with every agent as a candidate (the first 200 customers), and the
    warm-up's recommends (customers from the other end of the list)."""

    customers: list[str]
    agents: list[str]
    recommend: list[dict[str, object]]
    assign: list[dict[str, object]]
    warm_up: list[dict[str, object]]


def _workload(world: Path) -> Workload:
    """The :class:`Workload` over the world in ``world`` (a demo's ``NBA_DATA_DIR/world``)."""
    customers, agents = served.world_ids(world)
    return Workload(
        customers=customers,
        agents=agents,
        recommend=[{"customer_id": c, "channel": "voice"} for c in customers],
        assign=[
            {"customer_id": c, "intent": "billing", "channel": "voice", "language": "en", "agent_ids": agents}
            for c in customers[:200]
        ],
        warm_up=[{"customer_id": c, "channel": "voice"} for c in customers[::-1][:WARM_UP_CUSTOMERS]],
    )


def _check(base: str, recommend: dict[str, object], assign: dict[str, object], keys: dict[Role, str]) -> None:
    """Exit unless recommend ranks actions for a known customer and assign ranks agents, neither degraded."""
    for route, body, ranked, role in (
        ("/v1/recommend", recommend, "actions", Role.DESKTOP),
        ("/v1/assign", assign, "agents", Role.ROUTER),
    ):
        answer = httpx.post(f"{base}{route}", json=body, headers={"X-API-Key": keys[role]}).json()
        if not answer.get(ranked) or answer.get("degraded") or answer.get("cold_start"):
            sys.exit(f"{route} did not answer as documented: {str(answer)[:300]}")


def _loaded(line: str) -> str:
    """``line`` with the 1-minute load average at its end."""
    return f"{line} load {os.getloadavg()[0]:.2f}"


def _parser(doc: str, data_dir: str) -> argparse.ArgumentParser:
    """The options of a bench that loads ``nba run`` with wrk: ``--seconds`` of each wrk run, and ``--data-dir``
    (``data_dir`` says what is done with it). Exits when wrk is not installed."""
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="length of each wrk run")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help=f"{data_dir} (built on first use, then kept; agents' live state goes stale after a day: "
        "nba demo --force rebuilds it)",
    )
    return parser


def main() -> None:
    """Build and serve the demo, measure health, recommend and assign, then with more workers; print the goal lines."""
    parser = _parser(__doc__, "serve this NBA_DATA_DIR")
    parser.add_argument("--workers", default="2,4", help="workers of the scaling runs, comma-separated ('': none)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nba-ds-") as tmp:
        root = Path(tmp)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        data = args.data_dir or root / "data"
        data.mkdir(parents=True, exist_ok=True)
        keys = served.make_keys(data)
        server = served.start(data, port)
        try:
            served.wait_ready(base, server)
            work = _workload(data / "world")
            recommend = _script(root / "recommend.lua", "/v1/recommend", work.recommend, keys[Role.DESKTOP])
            assign = _script(root / "assign.lua", "/v1/assign", work.assign, keys[Role.ROUTER])
            warm_up = _script(root / "warm-up.lua", "/v1/recommend", work.warm_up, keys[Role.DESKTOP])
            # A check that each answers as documented before it is timed, then a warm-up.
            _check(base, work.recommend[0], work.assign[0], keys)
            for script in (warm_up, assign):
                wrk("warm-up", f"{base}/", 4, 3, script=script)
            lines = [_loaded(wrk("health", f"{base}/health", CONNECTIONS, args.seconds, server.pid))]
            served.clear_contact_state(data)
            lines += [
                _loaded(wrk("recommend", f"{base}/", CONNECTIONS, args.seconds, server.pid, script=recommend)),
                _loaded(wrk("assign-100", f"{base}/", CONNECTIONS, args.seconds, server.pid, script=assign)),
            ]
        finally:
            served.stop(server)
        for n in [int(w) for w in args.workers.split(",") if w.strip()]:
            server = served.start(data, port, n)
            try:
                served.wait_ready(base, server)
                _check(base, work.recommend[0], work.assign[0], keys)
                wrk("warm-up", f"{base}/", 4, 3, script=warm_up)
                lines.append(_loaded(wrk(f"health-{n}w", f"{base}/health", CONNECTIONS, args.seconds)))
                served.clear_contact_state(data)
                lines.append(_loaded(wrk(f"recommend-{n}w", f"{base}/", CONNECTIONS, args.seconds, script=recommend)))
            finally:
                served.stop(server)
    for line in lines:
        print(line)
    runs = {m[1]: (float(m[2]), float(m[3]), int(m[4])) for line in lines if (m := _FIGURES.match(line))}
    (health, _, _), (rps, p99, bad), (_, assign_p99, assign_bad) = runs["health"], runs["recommend"], runs["assign-100"]
    met = rps / health >= RECOMMEND_SHARE_GOAL and p99 <= RECOMMEND_P99_GOAL_MS and bad == 0
    print(
        f"recommend: {rps / health:.0%} of /health's requests/s, p99 {p99:.2f} ms, {bad} errors "
        f"(goal >= {RECOMMEND_SHARE_GOAL:.0%}, p99 <= {RECOMMEND_P99_GOAL_MS:.0f} ms: {'met' if met else 'NOT met'})"
    )
    met = assign_p99 <= ASSIGN_P99_GOAL_MS and assign_bad == 0
    print(
        f"assign with {len(work.agents)} candidates: p99 {assign_p99:.2f} ms, {assign_bad} errors "
        f"(goal p99 <= {ASSIGN_P99_GOAL_MS:.0f} ms: {'met' if met else 'NOT met'})"
    )
    for n in [int(w) for w in args.workers.split(",") if w.strip()]:
        (health_n, _, _), (rps_n, p99_n, _) = runs[f"health-{n}w"], runs[f"recommend-{n}w"]
        print(
            f"{n} workers on {os.cpu_count()} cores: recommend {rps_n / rps:.2f}x one worker's requests/s "
            f"(p99 {p99_n:.2f} ms), /health {health_n / health:.2f}x; recommend at {rps_n / health_n:.0%} of /health"
        )


if __name__ == "__main__":
    main()
