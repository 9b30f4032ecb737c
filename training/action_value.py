"""What an action is worth: expected retained value gained over doing nothing, minus what it costs.

For a customer with lifetime value ``LTV`` and an action ``a``:

    gain(a) = LTV × (P(churn | no_action) − P(churn | a offered)) + P(accept | a) × (value_a − cost_a)

``P(churn | a offered)`` comes from the action-aware churn model (the action is one of its inputs; the gap to
the ``no_action`` row is the action's learned effect, see :func:`churn_by_action`), ``P(accept | a)`` from the
propensity model, value and cost from whoever owns the money (the service's catalog, or the simulated world's
costs when evaluating). ``no_action`` gains 0 by definition, so an action expected to lose money ranks below
doing nothing.

Why one churn model with the action and its acceptance as inputs: measured against the oracle on the
decision points of ``nba evaluate`` (training world: the demo's, 5,000 customers × 6 months; test world: 5,000
× 3 months, seed 1007), the share of the oracle's value gain over no action that each learner's policy captured:

- no churn effect at all (rank by P(accept) × (value − cost) only): 57%, the bar any effect model must clear;
- S-learner, the action as one categorical input: 55% (53-59% with slower or smaller trees);
- T-learner (a LightGBM per action boosting from a control-only baseline's log-odds): 52-59%;
- that baseline plus a per-action L2-penalised logistic effect on every feature: 35%;
- the action crossed with its acceptance as one categorical input: 60-66%;
- the action plus an ``accepted`` input (this module): 71% with the default trees, 75% with slower 15-leaf trees,
  81% with the small, slow trees splitting the action one-vs-rest of
  :meth:`~training.train.TrainParams.for_model` (79.7% on a second test world, seed 2024; with P(accept)
  calibrated out of period, 81.0%, and mean 80.3% over test worlds 1007-1009, 80.0% over 2024-2026). An offer works
  through its acceptance, so ``accepted`` pools the accepted rows of every action (a few hundred per action on
  the demo world, thousands together) before the trees split by action, leaving smaller per-action differences
  to learn.

Inverse-propensity weights were not tried: the behaviour policy's propensities depend only on features the
model sees, so conditioning on those features already removes its bias.

Where the rest is lost (``bench.policy`` on the 5,000-customer world, mean over test worlds 1007-1009 and
2024-2026): the policy
with the oracle's true churn and the learned P(accept) captures 97%, the learned churn with the oracle's
P(accept) 89%. The learned churn pools the effect of acceptance: accepted minus declined is about -1.8 points of
churn for every action, where the oracle's is -2.8 for a retention offer, -1.5 for a loyalty bonus and -0.2 for a
plan upgrade. A per-action split of the accepted rows rests on a few hundred rows and a dozen or two churns per action,
and more freedom to learn it only fits their noise: the same trees boosted 1,000 rounds instead of the 300 early
stopping chose captured 72-73%, and an ``accepted`` indicator per action beside the pooled one 77-78%. Neither a
constraint nor pooling the declined rows helps: ``accepted`` monotone decreasing (accepting never raises churn)
captured 80.2% / 80.1% (test worlds 1007-1009 / 2024-2026), the learned effect of accepting being negative for
every action already (its size per action is what is wrong); one ``declined`` category for every action's declined
rows, the action's code kept on the accepted rows only, 72.0% / 71.4%. Nor does averaging away the trees' own
variance: five such models on half the rows and 70% of the inputs each (seeds 7-11), their probabilities averaged
and then calibrated, 79.6% / 79.9% (one of them alone 78.5% / 78.0%): what varies is the data's draw, which every
bagged model shares.

More data, re-measured (``bench.policy --train-customers N``: seed-7 training worlds of N customers × 6 months,
these settings): 5,000 customers 80.3% / 80.0%, 10,000 77.7% / 77.7%, 20,000 73.2% / 73.6%, 50,000 89.1% / 89.1%
(85.3% / 85.4% with :meth:`~training.train.TrainParams.for_rows`' settings for large frames, 31 leaves at learning
rate 0.1, which its 185k training rows fall short of). The 20,000-customer dip is the world's draws, not a bias of
the learner: against the oracle's churn probabilities of the same rows, its customers who declined a payment plan
churned 130 times where 156.9 were expected (z = -2.3) and those who declined a plan upgrade 216 where 186.0 were
(z = +2.4). The model learned both as effects (a declined payment plan -0.31 points of churn against
``no_action``; truth 0) and offered a payment plan at 47% of the decisions (the oracle at 2.7%). Cells of a few
thousand (action, declined) rows and a few hundred churns carry that much chance, so below some 50,000 customers
one training world's share says as much about its draws as about the learner.

So the demo world has 50,000 customers (:class:`training.demo.DemoConfig`, since 2026-12-05). Trained on it
(``bench.policy``, test worlds of its size) these settings capture 88.9% / 89.1%, and on a second draw of it
(``--train-seed 8``) 87.9% / 88.0%. Quicker churn settings, measured on the same two training worlds with test
worlds of 20,000 customers (a scratch script; these settings there: 88.9% / 89.3% and 88.0% / 88.1%): learning rate
0.1, 135 rounds instead of 746, 87.6% / 88.2% and 87.8% / 87.9%; learning rate 0.05 87.0% / 87.4% (seed 7);
``max_bin`` 63 88.2% / 88.6% and 87.2% / 87.2%; :meth:`~training.train.TrainParams.for_rows`' large-frame settings
85.8% / 86.3% (seed 7). None is used: each gives up a point or more, and training these settings is not what made a
50,000-customer world slow. Its churn model's 846 rounds take 11 s on one thread and 6 s on two on a quiet machine;
the 226 s once measured is what two LightGBM threads cost when other jobs hold the cores (the same training at a
load average of 5.5: 172 s), and the 107 s of its point-in-time join became 7 s (:mod:`features.event_join`; 13 s
for the pairwise join it replaced, measured beside it on a quiet machine). The demo builds in about two minutes
(the README's benchmarks).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from training.bundle import ModelBundle

NO_ACTION = "no_action"


def churn_by_action(churn: ModelBundle, inputs: np.ndarray, actions: Sequence[str], accept: np.ndarray) -> np.ndarray:
    """P(churn | action offered), shape (customers, actions), for one customer vector or a matrix of them.

    The churn model knows whether an offer was accepted; at decision time nobody does, so each action's churn is
    the mix ``accept × P(churn | a, accepted) + (1 − accept) × P(churn | a, declined)`` with ``accept`` the
    propensity model's P(accept), shape (customers, actions) (0 for ``no_action``). One predict call scores
    every (customer, action, accepted or not) row.
    """
    if NO_ACTION not in churn.actions:
        raise TypeError(f"the {churn.kind} bundle is not action-aware (actions {churn.actions}): retrain it")
    customers = np.atleast_2d(inputs)
    n, m = len(customers), len(actions)
    offered = churn.with_actions(customers, actions)
    rows = np.empty((2 * n * m, offered.shape[1] + 1), dtype=np.float64)  # declined, then accepted
    rows[: n * m, :-1] = rows[n * m :, :-1] = offered
    rows[: n * m, -1], rows[n * m :, -1] = 0.0, 1.0
    p = churn.predict(rows)
    declined, accepted = p[: n * m].reshape(n, m), p[n * m :].reshape(n, m)
    share = np.atleast_2d(accept)
    return np.asarray(share * accepted + (1.0 - share) * declined, dtype=np.float64)


def untreated_rows(churn: ModelBundle, inputs: np.ndarray) -> np.ndarray:
    """The churn model's input for ``inputs`` (a customer vector or matrix) with no action offered: the row whose
    prediction is the customer's churn risk and whose contributions say why."""
    customers = np.atleast_2d(inputs)
    return np.column_stack([churn.with_actions(customers, [NO_ACTION]), np.zeros(len(customers))])


def expected_gain(
    churn_if_none: np.ndarray,
    churn_if_offered: np.ndarray,
    accept: np.ndarray,
    lifetime_value: np.ndarray,
    payoff: np.ndarray,
) -> np.ndarray:
    """Expected value gained over doing nothing, per customer (rows) and action (columns).

    ``churn_if_none`` and ``lifetime_value`` have one entry per customer; ``churn_if_offered`` and ``accept``
    one per (customer, action); ``payoff`` (value − cost of an accepted action) one per action.
    """
    retained = np.asarray(lifetime_value, dtype=np.float64).reshape(-1, 1) * (
        np.asarray(churn_if_none, dtype=np.float64).reshape(-1, 1) - np.atleast_2d(churn_if_offered)
    )
    return np.asarray(retained + np.atleast_2d(accept) * np.asarray(payoff, dtype=np.float64), dtype=np.float64)
