"""The soak's suite version (issue 9): :func:`bench.soak.measure`, the benchmark's own code, for 30 seconds.

``nba run`` (one worker, a process of its own) on the session's Redis holding the test world (5,000 customers, 100
agents) with the session's champions, loaded with the soak's contact-center mix (events, assign with 100
candidates, recommend, feedback on both) by :mod:`bench.load`: a warm-up of 3 s, the peak over 5 s, 2 s of settling,
then four windows of 5 s at half the peak. No wrk: the load is the benchmark's Python client, so this runs wherever
the suite does. The benchmark's goal lines are printed (``-s``), not asserted: 1.5x on p99 between 5-second windows
is not a property of the server on a shared machine (below).

The bounds, from 16 runs of this test on this machine (2 cores shared with other engineers' jobs, 2026-12-05
12:19-13:28 UTC): 13 alone in their pytest at load average 0.7-8.8, two busy-looping processes beside three of
them; 2 beside ``test_faults.py`` in another pytest; 1 under ``pytest -n 2`` with it. And from 19 measurements of
the same kind at 70% of the peak (5 beside the busy loops, load 4-6.4). All 16 runs passed.

- no errors, in the peak and in every window: every answer 2xx, no decision degraded, none unanswered. None in
  any run. The service runs with a Redis budget of 1 s (``NBA_REDIS_TIMEOUT_MS``) instead of its 100 ms: with
  100 ms, 2 of 6 measurements at load 5.5 had 24 and 46 errors (decisions degraded, then 503s and the 404s of
  feedback on the decisions whose record was not written), each after Redis had not answered within 100 ms
  ("no reply from Redis within 0.1 s" in the service's log) while six processes wanted the two cores: the
  machine's doing, not a fault of the service under sustained load, which is what this test looks for;
- at least 250 requests in each window, so that the load ran at all: about 700 at the least (142 req/s, the peak
  measured at 283 while a CPU-bound training shared the cores), 1,335-4,490 otherwise (the last on a quiet machine,
  where the peak was 1,796 req/s and the last window reached customers a second time);
- the server's resident memory grows by less than 1% (3.8 MB) from the end of the first window to the end of the
  last: it grew by 0.0-0.1% (at most 0.4 MB, on 374.9-376.3 MB) in every run. A leak of 2 KB a request fails it
  at the slowest rate seen (2,100 requests in the last three windows), 0.3 KB at the fastest (13,500);
- the server's CPU a request in each later window at most 1.5x the first window's: 1.11x at the most in the 7
  runs whose rows were kept (673-908 us a request), 1.15x in the 19 measurements (beside the busy loops). A
  server that works harder per request as the load goes on (a growing structure scanned per request, a cache
  that stops hitting) fails it, and the machine's load moves it little: time spent waiting for a core is not
  the process's CPU time;
- each later window's p99 at most 3x the first window's or 3x 200 ms, whichever is more (so 600 ms at the
  least): a pile-up or a hang. The p99 of a 5-second window is the machine's weather: first windows of 8 to
  187 ms, later windows up to 187 ms in the test's runs and up to 370 ms beside the busy loops; the ratio to the
  first window reached 7.2x (8.1 ms in a quiet spell, then 57.7 ms) with no change in the server (its CPU a
  request within 10%, no error). The 1.5x goal is the 10-minute benchmark's (``bench.soak``, README's
  Benchmarks), on windows of a minute.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import uvloop

from bench import served
from bench.soak import ROLES, Plan, Soak, Target, goals, measure, table
from tests.conftest import own_world, session_keys
from tests.e2e.processes import nba_env, nba_process

PLAN = Plan(warm_up_s=3, peak_s=5, settle_s=2, window_s=5, windows=4, share=0.5)
REDIS_TIMEOUT_MS = 1_000
MIN_REQUESTS = 250
MEMORY_GROWTH = 0.01
CPU_RATIO = 1.5
P99_RATIO = 3.0
P99_FLOOR_MS = 200.0


@pytest.fixture
def target(
    tmp_path: Path, redis_url: str, world: Path, data_dir: Path, champions: object, materialized: None
) -> Iterator[Target]:
    """``nba run`` with the session's champions, its models loaded, the test world materialized in a flushed Redis."""
    own = tmp_path / "data"
    own_world(own, world)
    keys_file = str(session_keys().path)
    env = nba_env(redis_url, own, data_dir, NBA_KEYS_FILE=keys_file, NBA_RATE_LIMIT="1000000000")
    env |= {"NBA_LOG_LEVEL": "warning", "NBA_REDIS_TIMEOUT_MS": str(REDIS_TIMEOUT_MS)}
    with nba_process(env, tmp_path / "nba-run.log", path="/ready") as (url, process):
        customers, agents = served.world_ids(world)
        keys = {role: session_keys().by_role[role] for role in ROLES}
        yield Target("127.0.0.1", int(url.rsplit(":", 1)[1]), process.pid, keys, customers, agents)


def test_a_short_soak_answers_every_request_and_keeps_its_memory_cpu_and_latency(target: Target) -> None:
    soak: Soak = uvloop.run(measure(target, PLAN))
    print("\n" + "\n".join(table(soak)))
    for goal in goals(soak):
        print(f"{'PASS' if goal.met else 'FAIL'} {goal.name}: {goal.figure} (the benchmark's goal, not asserted here)")
    first, last = soak.samples[0], soak.samples[-1]
    assert soak.peak.errors == 0, soak.peak.failures
    for n, sample in enumerate(soak.samples, 1):
        assert sample.window.errors == 0, f"window {n}: {sample.window.failures}"
        assert sample.window.requests >= MIN_REQUESTS, f"window {n}: {sample.window.requests} requests"
    growth = last.after.rss_kb / first.after.rss_kb - 1
    assert growth < MEMORY_GROWTH, f"RSS {first.after.rss_kb} kB after window 1, {last.after.rss_kb} kB at the end"
    for n, sample in enumerate(soak.samples[1:], 2):
        assert sample.cpu_us <= CPU_RATIO * first.cpu_us, f"window {n}: {sample.cpu_us:.0f} us a request"
        ceiling = P99_RATIO * max(first.window.quantile_ms(0.99), P99_FLOOR_MS)
        assert sample.window.quantile_ms(0.99) <= ceiling, f"window {n}: p99 {sample.window.quantile_ms(0.99):.1f} ms"
