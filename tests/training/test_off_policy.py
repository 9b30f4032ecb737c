"""The off-policy estimators: rules that hold for every log (hypothesis), and errors that name the column."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from training.errors import OffPolicyError
from training.off_policy import (
    DR,
    IPS,
    SNIPS,
    LoggedDecisions,
    compare,
    effective_sample_size,
    estimate,
    one_hot,
    per_action,
)

ACTIONS = 4


@st.composite
def logs(draw: st.DrawFn, *, min_size: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A logged bandit: behaviour's per-action probabilities, the logged action, its reward, and a target policy."""
    n = draw(st.integers(min_size, 60))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    behaviour = rng.dirichlet(np.ones(ACTIONS), size=n) * 0.9 + 0.1 / ACTIONS  # every action has a chance
    actions = np.array([rng.choice(ACTIONS, p=row) for row in behaviour])
    reward = draw(arrays(np.float64, n, elements=st.floats(-1_000, 1_000, allow_nan=False)))
    target = rng.dirichlet(np.ones(ACTIONS), size=n)
    return behaviour, actions, reward, target


def _logged(behaviour: np.ndarray, actions: np.ndarray, reward: np.ndarray, target: np.ndarray) -> LoggedDecisions:
    rows = np.arange(len(actions))
    return LoggedDecisions(reward, behaviour[rows, actions], target[rows, actions])


def _by_name(logged: LoggedDecisions, **kwargs: int) -> dict[str, float]:
    return {e.estimator: e.value for e in estimate(logged, resamples=200, **kwargs)}


@settings(max_examples=50, deadline=None)
@given(log=logs())
def test_ips_of_the_logging_policy_is_the_on_policy_mean(log: tuple[np.ndarray, ...]) -> None:
    behaviour, actions, reward, _ = log
    logged = _logged(behaviour, actions, reward, behaviour)
    (ips, snips) = estimate(logged, resamples=200)
    assert ips.value == pytest.approx(reward.mean(), abs=1e-9)
    assert snips.value == pytest.approx(reward.mean(), abs=1e-9)
    assert ips.effective_sample_size == pytest.approx(len(reward))
    assert ips.max_weight == pytest.approx(1.0)


@settings(max_examples=50, deadline=None)
@given(log=logs())
def test_snips_lies_within_the_reward_range(log: tuple[np.ndarray, ...]) -> None:
    logged = _logged(*log)
    snips = next(e for e in estimate(logged, resamples=200) if e.estimator == SNIPS)
    if logged.weights.sum() > 0:
        low, high = logged.reward.min(), logged.reward.max()
        assert low - 1e-6 <= snips.value <= high + 1e-6
        assert low - 1e-6 <= snips.low <= snips.high <= high + 1e-6


@settings(max_examples=50, deadline=None)
@given(log=logs(), choice_seed=st.integers(0, 2**32 - 1))
def test_a_deterministic_target_weighs_only_the_decisions_it_agrees_with(
    log: tuple[np.ndarray, ...], choice_seed: int
) -> None:
    behaviour, actions, reward, _ = log
    choice = np.random.default_rng(choice_seed).integers(0, ACTIONS, len(actions))
    target, _, _ = per_action(actions, one_hot(choice, ACTIONS))
    rows = np.arange(len(actions))
    logged = LoggedDecisions(reward, behaviour[rows, actions], target)
    agree = choice == actions
    expected = (reward[agree] / behaviour[rows, actions][agree]).sum() / len(reward)
    assert _by_name(logged)[IPS] == pytest.approx(expected, abs=1e-6)
    assert np.array_equal(logged.weights > 0, agree)


@settings(max_examples=50, deadline=None)
@given(log=logs(), model_seed=st.integers(0, 2**32 - 1))
def test_doubly_robust_with_a_zero_model_is_ips_and_with_an_exact_model_is_the_model(
    log: tuple[np.ndarray, ...], model_seed: int
) -> None:
    behaviour, actions, reward, target = log
    rows = np.arange(len(actions))
    zero = per_action(actions, target, np.zeros_like(target))
    logged = LoggedDecisions(reward, behaviour[rows, actions], *zero)
    values = _by_name(logged)
    assert values[DR] == pytest.approx(values[IPS], abs=1e-6)
    # A model that predicts every logged reward exactly leaves nothing to correct: DR is the model's value.
    model = np.random.default_rng(model_seed).normal(size=target.shape) * 100
    model[rows, actions] = reward
    exact = per_action(actions, target, model)
    assert _by_name(LoggedDecisions(reward, behaviour[rows, actions], *exact))[DR] == pytest.approx(
        float(np.mean((target * model).sum(axis=1))), abs=1e-6
    )


@settings(max_examples=30, deadline=None)
@given(log=logs(min_size=5), seed=st.integers(0, 1_000))
def test_intervals_are_seeded_and_hold_the_estimate(log: tuple[np.ndarray, ...], seed: int) -> None:
    logged = _logged(*log)
    first, again = estimate(logged, seed=seed, resamples=300), estimate(logged, seed=seed, resamples=300)
    assert first == again
    for e in first:
        if np.isfinite(e.value):
            assert e.low <= e.high
            assert e.decisions == len(logged)


def test_intervals_narrow_with_more_decisions() -> None:
    rng = np.random.default_rng(3)
    widths = []
    for n in (400, 6_400):
        propensity = rng.uniform(0.2, 1.0, n)
        logged = LoggedDecisions(rng.normal(10, 2, n), propensity, np.full(n, 0.5))
        ips = estimate(logged, seed=1)[0]
        widths.append(ips.high - ips.low)
    assert widths[1] < widths[0] / 3  # ~1/sqrt(16) = 1/4


def test_effective_sample_size_counts_equal_weights_fully_and_one_weight_once() -> None:
    assert effective_sample_size(np.ones(50)) == pytest.approx(50)
    assert effective_sample_size(np.array([0.0, 0.0, 7.0])) == pytest.approx(1)
    assert effective_sample_size(np.zeros(3)) == 0.0


def test_snips_is_nan_when_the_target_never_agrees_with_the_log() -> None:
    logged = LoggedDecisions(np.array([1.0, 2.0]), np.array([0.5, 0.5]), np.zeros(2))
    ips, snips = estimate(logged, resamples=100)
    assert ips.value == 0.0
    assert np.isnan([snips.value, snips.low, snips.high]).all()


def test_a_policy_compared_with_itself_differs_by_nothing_and_differences_are_paired() -> None:
    rng = np.random.default_rng(5)
    n = 2_000
    behaviour = np.full((n, 2), 0.5)
    actions = rng.integers(0, 2, n)
    model = np.column_stack([np.full(n, 100.0), np.full(n, 110.0)])
    reward = model[np.arange(n), actions] + rng.normal(0, 300, n)  # large shared noise
    a = LoggedDecisions(reward, behaviour[np.arange(n), actions], *per_action(actions, one_hot(np.zeros(n), 2), model))
    b = LoggedDecisions(reward, behaviour[np.arange(n), actions], *per_action(actions, one_hot(np.ones(n), 2), model))
    same = compare(a, a)
    assert all(d.value == 0 and d.low == 0 and d.high == 0 for d in same)
    dr_diff = compare(a, b, seed=2)[2]
    separate = {e.estimator: e for e in estimate(a, seed=2)} | {"b": estimate(b, seed=2)[2]}
    assert dr_diff.value == pytest.approx(separate["b"].value - separate[DR].value)
    assert dr_diff.low <= 10 <= dr_diff.high  # the true difference
    with pytest.raises(ValueError, match="same logged decisions"):
        compare(a, LoggedDecisions(reward[:-1], a.propensity[:-1], a.target[:-1]))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"propensity": [0.5, 0.0, 0.5]},
            r"column 'p' \(the logging policy's .*\): 1 value\(s\) outside \(0, 1\], the first at row 2: 0.0",
        ),
        ({"propensity": [0.5, 1.5, 0.5]}, r"column 'p' .*outside \(0, 1\], the first at row 2: 1.5"),
        ({"propensity": [0.5, 0.5, np.nan]}, r"column 'p' .*missing or not a finite number, the first at row 3"),
        ({"reward": [1.0, np.inf, 2.0]}, r"column 'r' \(the reward\): 1 value\(s\) missing or not a finite number"),
        ({"target": [0.5, -0.1, 0.5]}, r"column 't' .*outside \[0, 1\], the first at row 2: -0.1"),
        ({"target": [0.5, 0.5]}, r"the columns differ in length: column 'r' \(the reward\) 3, .*column 't' .* 2"),
        ({"reward": [], "propensity": [], "target": []}, "no decisions to evaluate: the log is empty"),
    ],
    ids=[
        "propensity-zero",
        "propensity-above-one",
        "propensity-nan",
        "reward-inf",
        "target-negative",
        "lengths",
        "empty",
    ],
)
def test_bad_logs_are_refused_naming_the_column(change: dict[str, list[float]], message: str) -> None:
    fields: dict[str, list[float]] = {
        "reward": [1.0, 2.0, 3.0],
        "propensity": [0.5, 0.5, 0.5],
        "target": [0.5, 0.5, 0.5],
    }
    fields |= change
    with pytest.raises(OffPolicyError, match=message):
        LoggedDecisions(
            **{k: np.array(v) for k, v in fields.items()}, columns={"reward": "r", "propensity": "p", "target": "t"}
        )


def test_a_reward_model_comes_whole() -> None:
    with pytest.raises(ValueError, match="together"):
        LoggedDecisions(np.ones(2), np.ones(2), np.ones(2), model_logged=np.ones(2))
