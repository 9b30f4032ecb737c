"""What the service remembers of each decision it answers, so feedback can find it and evaluation can use it.

Two keys per decision, in Redis beside the features, both with the decision id as hash tag (one slot, so one
shard on a cluster and one script may touch both), and the decision's id in a set of the customer's (see
:meth:`~features.OnlineStore.decisions_key`), so an erasure of the customer deletes both keys:

- ``{ns}:decision:{<decision_id>}``: a string, the **record**, written once when recommend or assign answers
  (``SET ... EX``, kept ``NBA_DECISION_TTL_DAYS``), off the request's path: the answer never waits for it.
- ``{ns}:feedback:{<decision_id>}``: a hash, one field per answer given through ``POST /v1/feedback`` (the
  action id and :data:`RETAINED` for recommend; ``resolved`` and ``csat`` for assign), written with ``HSETNX`` so
  the first answer stands and a repeat counts once; it expires with its decision.

A recommend's last answer comes late: whether the customer was still a customer :data:`RETENTION_HORIZON_DAYS`
after the decision (the churn model's label horizon) is known only then, so records are kept
``NBA_DECISION_TTL_DAYS`` (:data:`DEFAULT_TTL_DAYS`, the horizon and :data:`ANSWER_MARGIN_DAYS` for the answer to be
gathered and posted, and for the shadow report to read it).

The record is a JSON object (format 1), ids and numbers only, never a feature value or a name:

============  =====================================================================================
``v``         1, the format
``kind``      ``recommend`` or ``assign``
``customer``  the customer id the decision was for
``at``        when it was answered, epoch seconds (float)
``actions``   recommend: the action ids returned, best first
``agents``    assign: the agent ids ranked, best first, at most :data:`AGENTS_KEPT`
``intent``    assign: the contact's intent
``models``    registered model name → version that scored it (empty when the fallback answered)
``catalog``   recommend: the catalog's version (a hash of its file)
``contract``  the feature contract's version
============  =====================================================================================

A feedback field's value is JSON too: ``{"outcome": "accepted" | "declined" | "ignored", "at": ...}`` for an
action, ``{"retained": true, "at": ...}`` for the customer's retention, ``{"resolved": true, "agent": "A0033", "at":
...}`` and ``{"csat": 4, "agent": "A0033", "at": ...}`` for an assign. A decision log (issue 8) can read both keys
as they stand, or be fed the same JSON.

What it costs: a recommend's record is about 230 bytes of JSON, 330 bytes of Redis memory with its key and expiry
(``MEMORY USAGE``), kept as many days as decisions are; at 1,000,000 decisions a day and 40 days, about 13 GB.
The customer's set of decision ids (about 40 bytes a decision) expires with the newest of them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from features import OnlineStore

FORMAT = 1
RETENTION_HORIZON_DAYS = 30
"""Days after a recommend decision at whose end its ``retained`` answer says whether the customer was still one: the
churn model's label horizon (churn within 30 days of a decision date, :mod:`training.train`)."""
ANSWER_MARGIN_DAYS = 10
"""Days past the horizon a record is kept by default, for the retention answer to be gathered, posted and read."""
DEFAULT_TTL_DAYS = RETENTION_HORIZON_DAYS + ANSWER_MARGIN_DAYS
RETAINED = "retained"
"""The feedback field of a recommend's retention answer (no catalog action may take this id)."""
AGENTS_KEPT = 10
"""Ranked agents a record keeps: the routing engine connects the first free one of the head of the list."""
Kind = Literal["recommend", "assign"]

# KEYS: the record, its feedback hash; ARGV: the field, its value. -1: no such decision (never made, or expired);
# 1: recorded; 0: this field was recorded before (the first answer stands). The feedback hash expires with the record.
_CLAIM = b"""
local ttl = redis.call('PTTL', KEYS[1])
if ttl == -2 then return -1 end
local set = redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
return set
"""


@dataclass(frozen=True)
class DecisionRecord:
    """A remembered decision and the answers recorded for it so far."""

    decision_id: str
    kind: Kind
    customer_id: str
    at: float
    actions: tuple[str, ...] = ()
    agents: tuple[str, ...] = ()
    intent: str | None = None
    models: Mapping[str, str] = field(default_factory=dict)
    catalog: str | None = None
    contract: str | None = None
    feedback: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def to_json(self) -> bytes:
        """The record as stored (format 1; see the module), feedback left out."""
        body: dict[str, object] = {"v": FORMAT, "kind": self.kind, "customer": self.customer_id, "at": self.at}
        if self.kind == "recommend":
            body.update(actions=list(self.actions), catalog=self.catalog)
        else:
            body.update(agents=list(self.agents[:AGENTS_KEPT]), intent=self.intent)
        body.update(models=dict(self.models), contract=self.contract)
        return msgspec.json.encode(body)

    @classmethod
    def from_stored(cls, decision_id: str, record: bytes, feedback: Mapping[str, Mapping[str, Any]]) -> DecisionRecord:
        """A record read back with its feedback."""
        body = msgspec.json.decode(record)
        return cls(
            decision_id=decision_id,
            kind=body["kind"],
            customer_id=body["customer"],
            at=float(body["at"]),
            actions=tuple(body.get("actions") or ()),
            agents=tuple(body.get("agents") or ()),
            intent=body.get("intent"),
            models=body.get("models") or {},
            catalog=body.get("catalog"),
            contract=body.get("contract"),
            feedback=feedback,
        )


class DecisionRecords:
    """Writes, reads and annotates decision records (see the module for the layout)."""

    def __init__(self, store: OnlineStore, *, ttl_days: float) -> None:
        self.store = store
        self.ttl_days = ttl_days
        self._ttl = str(max(1, math.ceil(ttl_days * 86_400))).encode()
        self.key = store.decision_key
        self.feedback_key = store.feedback_key

    def write_commands(self, record: DecisionRecord) -> list[list[bytes]]:
        """The commands that store ``record`` for the configured days and list it under its customer, for an
        erasure (sent with the answer's other writes)."""
        index = self.store.decisions_key(record.customer_id).encode()
        return [
            [b"SET", self.key(record.decision_id), record.to_json(), b"EX", self._ttl],
            [b"SADD", index, record.decision_id.encode()],
            [b"EXPIRE", index, self._ttl],
        ]

    async def get(self, decision_id: str) -> DecisionRecord | None:
        """The record and its feedback (one round trip), or None when none is kept under this id."""
        stored, answers = await self.store.execute(
            [[b"GET", self.key(decision_id)], [b"HGETALL", self.feedback_key(decision_id)]]
        )
        if not isinstance(stored, bytes):
            return None
        return DecisionRecord.from_stored(decision_id, stored, _answers(answers))

    async def feedback_of(
        self, decision_ids: Sequence[str], *, chunk: int = 1_000
    ) -> dict[str, dict[str, dict[str, Any]]]:
        """The answers recorded for each of ``decision_ids`` (none: an empty dict), a round trip per ``chunk``."""
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for start in range(0, len(decision_ids), chunk):
            ids = decision_ids[start : start + chunk]
            replies = await self.store.execute([[b"HGETALL", self.feedback_key(i)] for i in ids])
            out.update((i, _answers(reply)) for i, reply in zip(ids, replies, strict=True))
        return out

    async def claim(self, decision_id: str, name: str, value: Mapping[str, object]) -> Literal[-1, 0, 1]:
        """Record answer ``name`` of a decision unless one was: 1 recorded, 0 recorded before, -1 no such decision."""
        command = [b"EVAL", _CLAIM, b"2", self.key(decision_id), self.feedback_key(decision_id)]
        (reply,) = await self.store.execute([[*command, name.encode(), msgspec.json.encode(value)]])
        return int(reply)  # type: ignore[call-overload]

    async def release(self, decision_id: str, name: str) -> None:
        """Forget answer ``name`` (its effects could not be applied, so a retry must be able to record it)."""
        await self.store.execute([[b"HDEL", self.feedback_key(decision_id), name.encode()]])


def _answers(reply: object) -> dict[str, dict[str, Any]]:
    """``HGETALL``'s reply (a flat list, or a dict from redis-py's cluster client) as field → decoded JSON."""
    if isinstance(reply, Mapping):
        pairs: Sequence[tuple[object, object]] = list(reply.items())
    elif isinstance(reply, list):
        pairs = list(zip(reply[::2], reply[1::2], strict=True))
    else:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for name, value in pairs:
        text = name.decode() if isinstance(name, bytes) else str(name)
        try:
            out[text] = msgspec.json.decode(value if isinstance(value, bytes) else str(value).encode())
        except msgspec.DecodeError:
            continue
    return out
