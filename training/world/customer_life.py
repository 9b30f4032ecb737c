"""What customers do besides calling: metered usage, abandoned shop carts and changes of consent.

These draw from their own random stream (see :func:`training.world.simulate`), so adding a behaviour here
does not reshuffle the draws the churn, offer and contact outcomes come from.
"""

from __future__ import annotations

import numpy as np

from training.world.config import _ACTIVE_DAYS, _US_PER_DAY, _US_PER_S, PURPOSES
from training.world.draws import _times

_RECORDS = 4  # usage records a month: one every 7 days
_CONSENT_SHARE = {"profiling": 0.6, "phone": 0.8, "sms": 0.5}  # marketing: the simulation's own draw


def _usage(
    rng: np.random.Generator, who: np.ndarray, level: np.ndarray, snapshot_us: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A month's usage records of customers ``who``: (owner, time, units), every 3.5 days from a random phase.

    ``level`` is each customer's usage intensity this month (the one that drives logins), so a customer
    drifting toward churn uses less. Units are whole numbers, so any order of adding them gives the same sum.
    """
    step_us = _ACTIVE_DAYS * _US_PER_DAY // _RECORDS
    phase = rng.integers(0, step_us // _US_PER_S - 3_600, len(who)) * _US_PER_S
    start = snapshot_us - _ACTIVE_DAYS * _US_PER_DAY
    owner = np.repeat(who, _RECORDS)
    t = np.repeat(start + phase, _RECORDS) + np.tile(np.arange(_RECORDS, dtype=np.int64) * step_us, len(who))
    units = rng.poisson(np.repeat(6.0 * level[who], _RECORDS)).astype(np.float64)
    return owner, t, units


def _carts(
    rng: np.random.Generator, who: np.ndarray, price: np.ndarray, snapshot_us: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A month's abandoned carts: (owner, time, value); 6% of customers leave one, worth ~1.5 months' charge."""
    left = who[rng.random(len(who)) < 0.06]
    value = np.round(1.5 * price[left] * rng.lognormal(0.0, 0.5, len(left)), 2)
    return left, _times(rng, len(left), snapshot_us), value


def _initial_consent(rng: np.random.Generator, marketing: np.ndarray) -> dict[str, np.ndarray]:
    """Each purpose's consent flag per customer before the world starts."""
    n = len(marketing)
    return {"marketing": marketing.copy()} | {p: rng.random(n) < share for p, share in _CONSENT_SHARE.items()}


def _consent_changes(
    rng: np.random.Generator, who: np.ndarray, consent: dict[str, np.ndarray], unhappy: np.ndarray, snapshot_us: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A month's consent changes, applied to ``consent`` in place: (owner, time, purpose code, granted).

    Rare: about 0.3% of customers grant a withheld consent per purpose and month; 0.3% withdraw one they gave,
    1.5% when unhappy (``unhappy`` per customer).
    """
    owners, codes, granted = [], [], []
    for code, purpose in enumerate(PURPOSES):
        flag = consent[purpose][who]
        p = np.where(flag, 0.003 + 0.012 * unhappy[who], 0.003)
        flip = who[rng.random(len(who)) < p]
        consent[purpose][flip] = ~consent[purpose][flip]
        owners.append(flip)
        codes.append(np.full(len(flip), code, dtype=np.int64))
        granted.append(consent[purpose][flip])
    owner = np.concatenate(owners)
    return owner, _times(rng, len(owner), snapshot_us), np.concatenate(codes), np.concatenate(granted)
