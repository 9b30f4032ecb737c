"""Contact policies: how often an action may be put in front of one customer, and when it must rest.

An action's ``contact_policy`` in the catalog says, each rule optional:

- ``max_presentations`` in ``window_days``: the action is withheld once it was presented that many times in the
  window (today and the ``window_days - 1`` UTC days before it, the way the feature store's windows count days);
- ``cooldown_after_decline_days``: withheld for that long after the customer declined it;
- ``suppress_after_accept_days``: withheld for that long after the customer accepted it.

**When a presentation counts.** When recommend returns the action to the desktop: every action of the answer
under a cap counts once, whatever the agent then does. Counting on feedback instead would let a desktop that
never reports back show an offer without end, and a cap is a promise to the customer, not to the reporting
pipeline. A caller that shows only the first action asks for ``top_k: 1``.

**Where the state lives.** One Redis hash per customer, :meth:`features.OnlineStore.contact_key`
(``{ns}:contacts:customer:{<id>}``: the customer's hash tag, so its shard on a cluster), with three kinds of field:

- ``p:<action>:<day>``: presentations of the action on that UTC day (days since 1970), an integer ``HINCRBY``
  adds to, so two recommends at once never lose a count;
- ``d:<action>``: when the customer last declined it (epoch seconds), ``a:<action>``: last accepted it; written
  by ``POST /v1/feedback``.

Recommend reads the hash with ``HGETALL`` in the same round trip as the customer's features
(:meth:`features.OnlineStore.read_with`); its write (``HINCRBY`` per capped action returned, ``HDEL`` of day
fields no window reaches any more, ``EXPIRE`` to the longest rule of the catalog) leaves after the answer. A day
field is about 25 bytes; a customer shown three capped actions a day for a 30-day window holds 90 of them at most.
Two recommends for the same customer at the same instant both read the count before either adds to it, so both
may present an action at its last allowed presentation: a cap can be passed by the requests in flight at once for
one customer (one live contact at a time, in practice).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, model_validator

DAY_SECONDS = 86_400


class ContactPolicy(BaseModel):
    """How often an action may be presented to one customer, and how long it rests after an answer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_presentations: int | None = Field(default=None, ge=1, description="At most this many presentations...")
    window_days: int | None = Field(default=None, ge=1, le=365, description="...in this many days (today included).")
    cooldown_after_decline_days: float = Field(default=0.0, ge=0, le=365, description="Rest after a decline.")
    suppress_after_accept_days: float = Field(default=0.0, ge=0, le=3650, description="Rest after an acceptance.")

    @model_validator(mode="after")
    def _complete(self) -> ContactPolicy:
        if (self.max_presentations is None) != (self.window_days is None):
            raise ValueError("give max_presentations and window_days together (at most N presentations in D days)")
        rests = self.cooldown_after_decline_days or self.suppress_after_accept_days
        if self.max_presentations is None and not rests:
            raise ValueError("a contact policy needs at least one rule")
        return self

    @property
    def horizon_days(self) -> float:
        """How long any of its rules looks back."""
        return max(self.window_days or 0, self.cooldown_after_decline_days, self.suppress_after_accept_days)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class PolicyState:
    """One customer's contact-policy state as read from its hash."""

    presented: Mapping[str, Mapping[int, int]] = field(default_factory=dict)
    """Per action, presentations per UTC day."""
    declined_at: Mapping[str, float] = field(default_factory=dict)
    accepted_at: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def parse(cls, reply: object) -> PolicyState:
        """The state from ``HGETALL``'s reply: a flat list of field, value (RESP) or a dict (redis-py's cluster
        client). A field this version does not know is ignored, so a newer writer cannot break an older reader."""
        if isinstance(reply, Mapping):
            pairs: Iterable[tuple[object, object]] = reply.items()
        elif isinstance(reply, Sequence) and not isinstance(reply, str | bytes):
            pairs = zip(reply[::2], reply[1::2], strict=True)
        else:
            return EMPTY
        presented: dict[str, dict[int, int]] = {}
        declined: dict[str, float] = {}
        accepted: dict[str, float] = {}
        for raw_name, raw_value in pairs:
            kind, _, rest = _text(raw_name).partition(":")
            try:
                if kind == "p":
                    action, _, day = rest.rpartition(":")
                    presented.setdefault(action, {})[int(day)] = int(_text(raw_value))
                elif kind == "d":
                    declined[rest] = float(_text(raw_value))
                elif kind == "a":
                    accepted[rest] = float(_text(raw_value))
            except ValueError:
                continue
        return cls(presented, declined, accepted)

    def presentations(self, action_id: str, window_days: int, today: int) -> int:
        """Presentations of ``action_id`` on today and the ``window_days - 1`` days before."""
        days = self.presented.get(action_id, {})
        return sum(n for day, n in days.items() if today - window_days < day <= today)

    def blocks(self, action_id: str, policy: ContactPolicy, now: float) -> str | None:
        """Why ``policy`` withholds ``action_id`` from this customer at ``now``, or None when it allows it."""
        if policy.max_presentations is not None and policy.window_days is not None:
            shown = self.presentations(action_id, policy.window_days, math.floor(now / DAY_SECONDS))
            if shown >= policy.max_presentations:
                return f"presented {shown} times in {policy.window_days} days (at most {policy.max_presentations})"
        declined = self.declined_at.get(action_id)
        if declined is not None and now - declined < policy.cooldown_after_decline_days * DAY_SECONDS:
            return f"declined {(now - declined) / DAY_SECONDS:.1f} days ago"
        accepted = self.accepted_at.get(action_id)
        if accepted is not None and now - accepted < policy.suppress_after_accept_days * DAY_SECONDS:
            return f"accepted {(now - accepted) / DAY_SECONDS:.1f} days ago"
        return None

    def stale_fields(self, today: int, horizon_days: float) -> list[bytes]:
        """The day fields no window of the catalog reaches any more (``horizon_days`` its longest), to delete."""
        oldest = today - math.ceil(horizon_days)
        return [
            f"p:{action}:{day}".encode() for action, days in self.presented.items() for day in days if day <= oldest
        ]


EMPTY = PolicyState()
"""A customer never presented anything."""


def presentation_commands(
    key: str, action_ids: Sequence[str], *, now: float, horizon_days: float, state: PolicyState
) -> list[list[bytes]]:
    """The commands that count one presentation of each of ``action_ids`` today, drop the day fields no window
    reaches, and keep the hash as long as the longest rule (empty when there is nothing to count)."""
    if not action_ids:
        return []
    key_bytes, today = key.encode(), math.floor(now / DAY_SECONDS)
    commands = [[b"HINCRBY", key_bytes, f"p:{a}:{today}".encode(), b"1"] for a in action_ids]
    stale = state.stale_fields(today, horizon_days)
    if stale:
        commands.append([b"HDEL", key_bytes, *stale])
    commands.append([b"EXPIRE", key_bytes, str(math.ceil((horizon_days + 1) * DAY_SECONDS)).encode()])
    return commands


def answer_commands(key: str, action_id: str, answer: str, *, now: float, horizon_days: float) -> list[list[bytes]]:
    """The commands that record the customer's ``answer`` (``declined`` or ``accepted``) to ``action_id`` at ``now``."""
    field_name = {"declined": "d", "accepted": "a"}[answer]
    key_bytes = key.encode()
    return [
        [b"HSET", key_bytes, f"{field_name}:{action_id}".encode(), repr(now).encode()],
        [b"EXPIRE", key_bytes, str(math.ceil((horizon_days + 1) * DAY_SECONDS)).encode()],
    ]
