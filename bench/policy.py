"""The decision-quality goals: the demo's models against random, rules, skills-only and the oracle on a fresh world.

Builds the demo's world (5,000 customers, 6 months, seed 7) in a temporary folder, trains the churn, propensity
and resolution models on it with the settings ``nba demo`` uses (no MLflow: nothing is registered), then scores
the policies of ``nba evaluate`` on a fresh world (seed 1007) with the oracle's true expectations and prints
the tables and the goal lines: the champion's share of the oracle's value gain over no action (goal ≥ 85%), the
champion against the rules, and model routing's share of the oracle's first-contact-resolution gain over
skills-only routing (goal ≥ 80%). Takes a few minutes.

    .venv/bin/python -m bench.policy [--customers N] [--seed S]
"""

from __future__ import annotations

import argparse
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from features import OfflineStore, Registry
from training.demo import DemoConfig, simulate_world
from training.evaluate_cli import TEST_SEED, evaluate_routing_on, policy_table, routing_table
from training.policy_evaluation import decision_points, evaluate_policies
from training.train import TrainParams, train_model
from training.world import WorldConfig, simulate


def main() -> None:
    """Train on the demo world, evaluate on a fresh one, print the table and the goal lines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=5_000, help="customers in the test world")
    parser.add_argument("--seed", type=int, default=TEST_SEED, help="seed of the test world")
    args = parser.parse_args()
    console = Console(highlight=False, width=140)
    registry = Registry.load()
    end = datetime.now(UTC).date()
    with tempfile.TemporaryDirectory(prefix="nba-bench-policy-") as tmp:
        train_world, test_world = Path(tmp) / "train", Path(tmp) / "test"
        config = DemoConfig()
        simulate_world(train_world, config, end=end)
        offline = OfflineStore(train_world, registry)
        churn = train_model("churn", registry, offline, params=TrainParams.for_model("churn", seed=config.seed)).bundle
        propensity = train_model(
            "propensity", registry, offline, params=TrainParams.for_model("propensity", seed=config.seed)
        ).bundle
        resolution = train_model(
            "resolution", registry, offline, params=TrainParams.for_model("resolution", seed=config.seed)
        ).bundle
        simulate(WorldConfig(customers=args.customers, months=3, seed=args.seed, end=end), test_world)
        evaluation = evaluate_policies(
            decision_points(OfflineStore(test_world, registry)), (churn, propensity), None, seed=args.seed
        )
        routing = evaluate_routing_on(test_world, registry, resolution, seed=args.seed)
    console.print(policy_table(evaluation))
    console.print(routing_table(routing))
    eces = ", ".join(f"{m.kind} {m.metrics['ece']:.4f}" for m in (churn, propensity, resolution))
    console.print(f"test ECE (goal ≤ 0.02): {eces}")
    for line in [*evaluation.goal_lines(), f"goal: {routing.goal_line()}"]:
        console.print(line)


if __name__ == "__main__":
    main()
