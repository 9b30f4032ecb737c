"""Off-policy estimates against the simulated world's truth: how often the 95% intervals hold the true value.

Trains the churn and propensity models on the demo's world (5,000 customers, 6 months, seed 7) as ``nba demo``
does (nothing registered), then for each of ``--seeds`` fresh worlds (``--customers`` customers, 3 months, seeds
S, S + 1, ...) logs the offers of the world's stochastic behaviour policy with their features and estimates two
deterministic target policies (:mod:`training.off_policy_world`): the models' policy and "a retention offer to
everyone who consents", truly worse. Prints the share of worlds whose IPS, SNIPS and DR intervals hold the
oracle's true value (the goal: DR ≥ 90%), and of the paired DR difference's intervals holding the true difference.
Then, on ``--large-seeds`` worlds of ``--large-customers`` customers, how often the worse policy is estimated
below the better one (DR point estimates) and how often the paired interval excludes 0. About 5 minutes.

    .venv/bin/python -m bench.off_policy [--seeds N] [--customers C] [--large-seeds M] [--large-customers L]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from rich.console import Console

from features import OfflineStore, Registry
from training.demo import DemoConfig, simulate_world
from training.off_policy import DR, IPS, SNIPS
from training.off_policy_world import MODELS, RETAIN_ALL, WorldCheck, check_world
from training.train import TrainParams, train_model

GOAL = 0.90


def main() -> None:
    """Train once, check many worlds, print the coverage and the ordering figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100, help="small worlds for the coverage figure")
    parser.add_argument("--customers", type=int, default=1_000, help="customers in each small world")
    parser.add_argument("--seed", type=int, default=2_000, help="seed of the first world")
    parser.add_argument("--large-seeds", type=int, default=5, help="large worlds for the ordering figure")
    parser.add_argument("--large-customers", type=int, default=10_000, help="customers in each large world")
    args = parser.parse_args()
    if args.seeds < 1 or args.large_seeds < 0:
        parser.error("--seeds must be at least 1 and --large-seeds at least 0")
    console = Console(highlight=False, width=140)
    registry = Registry.load()
    with tempfile.TemporaryDirectory(prefix="nba-bench-off-policy-") as tmp:
        config = DemoConfig()
        simulate_world(Path(tmp), config, end=datetime.now(UTC).date())
        offline = OfflineStore(Path(tmp), registry)
        churn, propensity = (
            train_model(kind, registry, offline, params=TrainParams.for_model(kind, seed=config.seed)).bundle
            for kind in ("churn", "propensity")
        )
    start = time.perf_counter()
    small = [
        check_world(s, churn, propensity, registry, customers=args.customers) for s in _seeds(args.seed, args.seeds)
    ]
    console.print(f"{args.seeds} worlds of {args.customers:,} customers in {time.perf_counter() - start:.0f} s")
    _coverage(console, small)
    if args.large_seeds:
        seeds = _seeds(args.seed + args.seeds, args.large_seeds)
        large = [check_world(s, churn, propensity, registry, customers=args.large_customers) for s in seeds]
        _ordering(console, large, args.large_customers)


def _seeds(first: int, count: int) -> range:
    return range(first, first + count)


def _coverage(console: Console, checks: list[WorldCheck]) -> None:
    decisions = [c.policies[MODELS].of(DR).decisions for c in checks]
    console.print(f"logged decisions per world: {min(decisions):,} to {max(decisions):,}")
    for policy in (MODELS, RETAIN_ALL):
        for estimator in (IPS, SNIPS, DR):
            share = np.mean([c.policies[policy].covered(estimator) for c in checks])
            widths = [c.policies[policy].of(estimator) for c in checks]
            width = np.mean([e.high - e.low for e in widths])
            errors = np.array([c.policies[policy].of(estimator).value - c.policies[policy].truth for c in checks])
            goal = f" (goal ≥ {GOAL:.0%}: {'met' if share >= GOAL else 'NOT met'})" if estimator == DR else ""
            console.print(
                f"{policy:>15} {estimator:>5}: interval holds the true value in {share:.0%} of {len(checks)} worlds"
                f"{goal}; mean width {width:,.0f}, bias {errors.mean():+,.1f}, RMSE {np.sqrt((errors**2).mean()):,.1f}"
            )
    held = np.mean([c.difference(DR).low <= c.true_difference <= c.difference(DR).high for c in checks])
    true = np.mean([c.true_difference for c in checks])
    console.print(
        f"paired DR difference (retention to all − models): interval holds the true difference ({true:+,.1f}) in "
        f"{held:.0%} of worlds; estimated below 0 in {np.mean([c.difference(DR).value < 0 for c in checks]):.0%}"
    )


def _ordering(console: Console, checks: list[WorldCheck], customers: int) -> None:
    below = np.mean([c.policies[RETAIN_ALL].of(DR).value < c.policies[MODELS].of(DR).value for c in checks])
    excludes = np.mean([c.difference(DR).high < 0 for c in checks])
    covered = np.mean([p.covered(DR) for c in checks for p in c.policies.values()])
    console.print(
        f"{len(checks)} worlds of {customers:,} customers: the worse policy estimated below the better in {below:.0%}, "
        f"the paired interval excludes 0 in {excludes:.0%}, DR intervals hold the truth in {covered:.0%}"
    )


if __name__ == "__main__":
    main()
