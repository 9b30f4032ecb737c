"""The routing evaluation: the oracle is never beaten, skills-only routing reads the rating and not the truth, and
the session's champion routes the test world's contacts better than skills-only routing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from features import OfflineStore, Registry
from tests.conftest import own_world
from training import DatasetError, ModelRegistry
from training.routing_evaluation import (
    CANDIDATES,
    POLICIES,
    RoutingEvaluation,
    evaluate_routing,
    held_out_contacts,
    pick_shares,
)

SKILLS = ("billing", "technical", "retention", "sales")


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 6).flatmap(
        lambda k: st.tuples(
            arrays(np.float64, (5, k), elements=st.floats(0, 1)),
            arrays(np.float64, (5, k), elements=st.floats(-5, 5)),
            arrays(np.bool_, (5, k)),
        )
    )
)
def test_no_policy_beats_the_oracle(case: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    truth, scores, eligible = case
    oracle = (pick_shares(truth, eligible) * truth).sum(axis=1)
    other = pick_shares(scores, eligible) * truth
    assert np.all(oracle >= other.sum(axis=1) - 1e-12)
    # Each contact with an eligible candidate is routed once (shares add to 1), ties share; none is routed else.
    np.testing.assert_allclose(pick_shares(scores, eligible).sum(axis=1), eligible.any(axis=1).astype(float))


def test_ties_share_the_pick() -> None:
    shares = pick_shares(np.array([[0.8, 0.8, 0.9, 0.8]]), np.array([[True, True, False, True]]))
    np.testing.assert_allclose(shares, [[1 / 3, 1 / 3, 0.0, 1 / 3]])


@pytest.fixture(scope="module")
def evaluation(
    champions: dict[str, str], model_registry: ModelRegistry, registry: Registry, offline: OfflineStore, world: Path
) -> RoutingEvaluation:
    bundle, _ = model_registry.load("resolution")
    contacts = held_out_contacts(pq.read_table(world / "contacts.parquet"), world)
    return evaluate_routing(bundle, registry, offline, contacts, seed=7)


def test_the_champion_routes_better_than_skills_only(evaluation: RoutingEvaluation) -> None:
    fcr = {o.policy: o.fcr for o in evaluation.outcomes}
    assert tuple(fcr) == POLICIES
    assert fcr["random"] < fcr["skills_only"] < fcr["model"] <= fcr["oracle"]
    # The rating sees part of the truth: skills-only routing gains over random, and leaves a gain to the oracle.
    assert fcr["skills_only"] - fcr["random"] > 0.05
    assert fcr["oracle"] - fcr["skills_only"] > 0.03
    assert evaluation.gain_captured > 0.5
    # Handle time and CSAT follow the match too: the oracle's picks are quicker and better rated than random ones.
    random, oracle = evaluation.outcome("random"), evaluation.outcome("oracle")
    assert oracle.handle_time_s < random.handle_time_s
    assert oracle.csat > random.csat + 0.1
    assert 1 <= random.csat <= 5
    assert evaluation.candidates == CANDIDATES
    assert evaluation.contacts > 1_000
    assert RoutingEvaluation.from_metrics(evaluation.metrics()) == evaluation
    lines = evaluation.lines()
    assert lines[-1].startswith(f"model captures {evaluation.gain_captured:.1%} of the oracle's FCR gain")
    assert [line.split()[0] for line in lines[2:-1]] == ["random", "skills-only", "model", "oracle"]


def test_skills_only_ranks_by_the_rating_not_the_truth(
    tmp_path: Path,
    world: Path,
    registry: Registry,
    model_registry: ModelRegistry,
    champions: dict[str, str],
    evaluation: RoutingEvaluation,
) -> None:
    # The same world with every rating turned upside down (0.4 <-> 0.8): the truth is untouched.
    own = own_world(tmp_path, world)
    snapshots = pq.read_table(world / "agent_snapshots.parquet")
    for skill in SKILLS:
        name = f"proficiency_{skill}"
        snapshots = snapshots.set_column(
            snapshots.column_names.index(name), name, pc.subtract(pa.scalar(1.2), snapshots.column(name))
        )
    (own / "agent_snapshots.parquet").unlink()
    pq.write_table(snapshots, own / "agent_snapshots.parquet")
    bundle, _ = model_registry.load("resolution")
    contacts = held_out_contacts(pq.read_table(world / "contacts.parquet"), world)
    flipped = evaluate_routing(bundle, registry, OfflineStore(own, registry), contacts, seed=7)
    before = {o.policy: o for o in evaluation.outcomes}
    after = {o.policy: o for o in flipped.outcomes}
    # Skills-only now picks the agents rated worst, who are worse than a random pick; the oracle and random do not
    # read the rating, so they pick (and get) exactly what they did.
    assert after["skills_only"].fcr < after["random"].fcr < before["skills_only"].fcr
    assert after["oracle"] == before["oracle"]
    assert after["random"] == before["random"]


def test_a_world_without_truth_tables_has_no_oracle(
    tmp_path: Path, world: Path, registry: Registry, model_registry: ModelRegistry, champions: dict[str, str]
) -> None:
    own = own_world(tmp_path, world)
    (own / "agent_truth.parquet").unlink()
    bundle, _ = model_registry.load("resolution")
    contacts = held_out_contacts(pq.read_table(world / "contacts.parquet"), world).slice(0, 10)
    with pytest.raises(DatasetError, match="only a simulated world has an oracle"):
        evaluate_routing(bundle, registry, OfflineStore(own, registry), contacts, seed=7)
