"""Exploration's draws: probabilities that are what the log says they are, for all scores."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from service.exploration import Exploration
from service.settings import ServiceSettings

_scores = st.lists(st.floats(-1e4, 1e4, allow_nan=False), min_size=1, max_size=12).map(
    lambda s: sorted(s, reverse=True)
)
_schemes = st.one_of(
    st.builds(Exploration, st.just("epsilon"), st.floats(0.01, 1.0), st.integers(2, 6)),
    st.builds(Exploration, st.just("softmax"), st.floats(0.01, 1e3), st.integers(2, 6)),
)


@given(_schemes, _scores)
def test_probabilities_are_a_distribution_over_the_first_among(exploration: Exploration, scores: list[float]) -> None:
    p = exploration.probabilities(scores)
    assert len(p) == len(scores)
    assert sum(p) == pytest.approx(1.0)
    assert all(pi >= 0 for pi in p)
    assert all(pi == 0 for pi in p[exploration.among :])
    assert p[0] == max(p), "the champion's best is never less likely than another"


@given(_schemes, _scores, st.integers(0, 2**32 - 1))
def test_a_draw_reports_the_probabilities_it_was_drawn_with(
    exploration: Exploration, scores: list[float], seed: int
) -> None:
    i, p = exploration.draw(scores, random.Random(seed))
    assert p[i] > 0
    assert p == pytest.approx(exploration.probabilities(scores)[: len(p)]) if len(scores) > 1 else p == [1.0]


def test_epsilon_greedy_serves_each_candidate_as_often_as_it_says() -> None:
    exploration = Exploration("epsilon", 0.3, 3)
    rng = random.Random(11)
    n = 30_000
    counts = [0, 0, 0, 0]
    for _ in range(n):
        i, p = exploration.draw([5.0, 4.0, 3.0, 2.0], rng)
        counts[i] += 1
    assert p == pytest.approx([0.8, 0.1, 0.1])
    # binomial standard deviation at n = 30,000 is at most 0.003: 4 of them
    assert [c / n for c in counts] == pytest.approx([0.8, 0.1, 0.1, 0.0], abs=0.012)


def test_softmax_follows_the_score_gaps() -> None:
    p = Exploration("softmax", 10.0, 3).probabilities([20.0, 10.0, 0.0, -5.0])
    e = 2.718281828459045
    z = 1 + 1 / e + 1 / e**2
    assert p == pytest.approx([1 / z, 1 / e / z, 1 / e**2 / z, 0.0])


def test_off_always_serves_the_best() -> None:
    assert Exploration().draw([1.0, 2.0], random.Random(0)) == (0, [1.0])


@pytest.mark.parametrize(
    "text", ["epsilon", "epsilon:0", "epsilon:1.5", "softmax:-1", "softmax:inf", "greedy:0.1", "off:1"]
)
def test_a_bad_setting_says_what_is_expected(text: str) -> None:
    with pytest.raises(ValueError, match="expected off, epsilon:E with 0 < E <= 1, or softmax:T with T > 0"):
        Exploration.parse(text, among=3)


def test_settings_name_the_field_of_a_bad_exploration() -> None:
    with pytest.raises(ValidationError, match="explore_assign"):
        ServiceSettings(explore_assign="epsilon:2")
    assert ServiceSettings(explore_recommend="softmax:5", explore_among=4).exploration("recommend") == Exploration(
        "softmax", 5.0, 4
    )
