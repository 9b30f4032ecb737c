"""The decision-quality goals: the demo's models against random, rules, skills-only and the oracle on a fresh world.

Builds the demo's world (50,000 customers, 100 agents, 6 months, seed 7) in a temporary folder, trains the churn,
propensity and resolution models on it with the settings ``nba demo`` uses (no MLflow: nothing is registered), then
scores the policies of ``nba evaluate`` on a fresh world of the demo's shape (seed 1007; routing needs its agents to
take as many contacts as the demo's: see :class:`training.demo.DemoConfig`) with the oracle's true expectations and
prints the tables and the goal lines: the champion's share of the oracle's value gain over no action (goal ≥ 85%), the
champion against the rules, and model routing's share of the oracle's first-contact-resolution gain over
skills-only routing (goal ≥ 80%). One test world's share moves by points from world to world, so both shares
are then printed as mean and range over ``--worlds`` test worlds (seeds S, S + 1, ...; 3 by default). Took
251-263 s of CPU (260-281 s at a load average of 1-4 on the 2-core machine, ``NBA_TRAIN_THREADS=1``) with the demo's
50,000 customers.
``--train-customers`` trains on a larger (or smaller) world than the demo's, to measure what more history is worth
(figures in :mod:`training.action_value`); ``--train-seed`` on another draw of it (the demo's seed, 7, by default), so
that a share is not one training world's luck.

    .venv/bin/python -m bench.policy [--customers N] [--seed S] [--worlds W] [--train-customers N] [--train-seed S]
"""

from __future__ import annotations

import argparse
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from features import OfflineStore, Registry
from training.demo import DemoConfig, simulate_world
from training.evaluate import ece_noise_floor
from training.evaluate_cli import TEST_SEED, evaluate_routing_on, policy_table, routing_table
from training.policy_evaluation import CHAMPION_POLICY, GOAL_SHARE, decision_points, evaluate_policies
from training.routing_evaluation import GOAL_SHARE as ROUTING_GOAL
from training.train import TrainParams, train_model
from training.world import WorldConfig, simulate


def main() -> None:
    """Train on the demo world, evaluate on a fresh one, print the table and the goal lines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=DemoConfig.customers, help="customers in the test world")
    parser.add_argument("--seed", type=int, default=TEST_SEED, help="seed of the first test world")
    parser.add_argument("--worlds", type=int, default=3, help="test worlds (seeds --seed, --seed + 1, ...)")
    parser.add_argument(
        "--train-customers", type=int, default=DemoConfig.customers, help="customers in the training world"
    )
    parser.add_argument(
        "--train-seed", type=int, default=DemoConfig.seed, help="seed of the training world and of the training"
    )
    args = parser.parse_args()
    if args.worlds < 1:
        parser.error("--worlds must be at least 1")
    console = Console(highlight=False, width=140)
    registry = Registry.load()
    end = datetime.now(UTC).date()
    shares: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory(prefix="nba-bench-policy-") as tmp:
        train_world = Path(tmp) / "train"
        config = DemoConfig(customers=args.train_customers, seed=args.train_seed)
        simulate_world(train_world, config, end=end)
        offline = OfflineStore(train_world, registry)
        trained = [
            train_model(kind, registry, offline, params=TrainParams.for_model(kind, seed=config.seed))
            for kind in ("churn", "propensity", "resolution")
        ]
        churn, propensity, resolution = (result.bundle for result in trained)
        for seed in range(args.seed, args.seed + args.worlds):
            test_world = Path(tmp) / f"test-{seed}"
            world = WorldConfig(customers=args.customers, agents=config.agents, months=3, seed=seed, end=end)
            simulate(world, test_world)
            evaluation = evaluate_policies(
                decision_points(OfflineStore(test_world, registry)), (churn, propensity), None, seed=seed
            )
            routing = evaluate_routing_on(test_world, registry, resolution, seed=seed)
            shares.append((evaluation.share_of_oracle(CHAMPION_POLICY), routing.gain_captured))
            if seed == args.seed:
                console.print(policy_table(evaluation))
                console.print(routing_table(routing))
                for line in [*evaluation.goal_lines(), f"goal: {routing.goal_line()}"]:
                    console.print(line)
    # A perfectly calibrated model's ECE on a few thousand test rows is not 0: beside each, the chance level.
    eces = ", ".join(
        f"{r.bundle.kind} {r.bundle.metrics['ece']:.4f} "
        f"(chance level {ece_noise_floor(r.bundle.predict(r.held_out.x)):.4f} on {len(r.held_out.y):,} rows)"
        for r in trained
    )
    console.print(f"test ECE (goal ≤ 0.02): {eces}")
    # One test world's figure moves by points from world to world: the mean and range over several say more.
    for name, goal, values in (
        ("champion's share of the oracle's value gain", GOAL_SHARE, [a for a, _ in shares]),
        ("model routing's share of the oracle's FCR gain over skills-only", ROUTING_GOAL, [b for _, b in shares]),
    ):
        mean = sum(values) / len(values)
        met = "met" if mean >= goal else "NOT met"
        console.print(
            f"over {len(values)} test worlds (seeds {args.seed}-{args.seed + len(values) - 1}): {name} "
            f"mean {mean:.1%}, range {min(values):.1%}-{max(values):.1%} (goal ≥ {goal:.0%}: {met})"
        )


if __name__ == "__main__":
    main()
