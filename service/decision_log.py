"""The decision log: every recommend and assign answered, appended to a bounded Redis Stream for shadow mode.

Why a log beside the decision records (:mod:`service.decision_records`): a record is what feedback needs (which
actions or agents were answered); the log is what a challenger needs to be judged on the same traffic (issue 8):
the inputs the champion scored, the candidates it chose among, its scores, what was served and with which
probability. The shadow worker (:mod:`service.shadow`) replays each entry with the challenger models; the
report joins the outcomes from ``POST /v1/feedback`` by ``decision_id``.

One stream per endpoint, ``{ns}:{decision-log}:recommend`` and ``{ns}:{decision-log}:assign``
(:mod:`features.decision_log_keys`): the hash tag puts both, and the shadow worker's results beside them, in one
cluster slot, so the worker stores a result and acknowledges its entry in one transaction. Each keeps about
``NBA_DECISION_LOG_MAX_LEN`` entries (``MAXLEN ~``) and none older than ``NBA_DECISION_LOG_RETENTION_DAYS`` days
(``MINID``, exact: the retention is a promise about personal data); a worker that stays down past either loses the
oldest entries. The entry travels in the answer's one unawaited write (:mod:`service.decisions`), so a request
never waits on it. The script that appends it (:data:`APPEND`) also
adds the entry's id to the customer's set of entries, which is how an erasure deletes them
(:meth:`features.OnlineStore.erase`): the log keeps ids only, but a customer's feature vectors are still theirs.

An entry has one field, ``d``: a msgpack-encoded :class:`RecommendEntry` or :class:`AssignEntry` (format 2: a
recommend entry gained the champion's ``churn_risk``; a format-1 entry still decodes, without it). Ids
and numbers only, never a name, phone or email: the customer's and the agents' feature vectors travel as float64
bytes in the contract's order (``feature_contract`` names the order). What it costs: a recommend entry is about
0.9 KB (a customer vector of 40 floats, ~10 candidates); an assign entry about 0.4 KB plus 272 bytes per eligible
candidate agent (34 floats each), so 28 KB with 100 candidates: at the default cap of 100,000 entries, ~90 MB for
recommend and up to ~2.8 GB for assign with 100 candidates; lower the cap where memory is short.
"""

from __future__ import annotations

import msgspec
import numpy as np

from features.decision_log_keys import KINDS, Kind, customer_entries_key, stream_key

FORMAT = 2
FIELD = b"d"
DAY_MS = 86_400_000

# KEYS: the stream, the customer's set of entry ids. ARGV: the cap, the oldest entry id to keep (ms), the
# retention (ms), the field, the entry. Returns the entry's id.
APPEND = b"""
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', ARGV[4], ARGV[5])
redis.call('XTRIM', KEYS[1], 'MINID', ARGV[2])
redis.call('SADD', KEYS[2], id)
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return id
"""


class RankedAction(msgspec.Struct, array_like=True, frozen=True):
    """One action of the champion's full ranking, with the numbers it was ranked by."""

    action: str
    score: float
    propensity: float
    expected_value: float


class RecommendEntry(msgspec.Struct, tag="recommend", frozen=True):
    """A recommend decision as the challenger needs it to rank the same candidates (see the module)."""

    v: int
    decision_id: str
    at: float
    customer: str
    channel: str
    context: dict[str, str | float | bool]
    """The live context as given (intent, sentiment, cart value, a person asked for); context weights read it."""
    x: bytes
    """The customer's feature vector, float64 in the contract's order."""
    candidates: list[str]
    """The action ids eligible at the decision (channel, dates, rules, consent, contact policy), as scored."""
    escape: str | None
    """The escape action, when its own rules allowed it at the decision (arbitration decides whether it leads)."""
    ranking: list[RankedAction]
    """The champion's arbitrated order of every candidate, best first (the answer shows its head)."""
    served: str
    """The action put first in the answer: the ranking's head, or the one exploration drew."""
    served_propensity: float
    """The probability with which the serving policy put ``served`` first (1 without exploration)."""
    policy: list[float]
    """The serving policy's probability of putting each of ``ranking``'s first candidates first (the rest: 0)."""
    models: dict[str, str]
    catalog: str
    feature_contract: str
    churn_risk: float | None = None
    """The champion's P(churn within the horizon | no action): with the lifetime value (in ``x``) it turns each
    action's ``expected_value`` (a gain over doing nothing) into its expected reward, lifetime value × (1 −
    P(churn | offered)) + P(accept) × (value − cost), the shadow report's reward model. None in format-1 entries."""


class RankedAgent(msgspec.Struct, array_like=True, frozen=True):
    """One agent of the champion's ranking, with its numbers."""

    agent: str
    score: float
    p_resolution: float
    handle_time_s: float | None


class AssignEntry(msgspec.Struct, tag="assign", frozen=True):
    """An assign decision as the challenger needs it to rank the same eligible agents."""

    v: int
    decision_id: str
    at: float
    customer: str
    intent: str
    channel: str
    language: str
    x: bytes
    """The customer's feature vector, float64 in the contract's order."""
    agents: list[str]
    """The eligible candidates (the hard constraints passed), in the order of ``agent_rows``."""
    agent_rows: bytes
    """Their feature vectors, float64, one row per agent in the contract's order."""
    churn_risk: float | None
    ranking: list[RankedAgent]
    served: str
    served_propensity: float
    policy: list[float]
    """The serving policy's probability of putting each of ``ranking``'s first agents first (the rest: 0)."""
    models: dict[str, str]
    feature_contract: str

    def agent_matrix(self, width: int) -> np.ndarray:
        """``agent_rows`` as an (agents, ``width``) matrix."""
        return np.frombuffer(self.agent_rows, dtype=np.float64).reshape(len(self.agents), width)


Entry = RecommendEntry | AssignEntry
_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(Entry)


def encode(entry: Entry) -> bytes:
    """The entry as the stream's field holds it."""
    return _ENCODER.encode(entry)


def decode(raw: bytes) -> Entry:
    """An entry read back; raises ``msgspec.ValidationError`` / ``DecodeError`` for anything else."""
    return _DECODER.decode(raw)


def vector(raw: bytes) -> np.ndarray:
    """A feature vector logged as float64 bytes."""
    return np.frombuffer(raw, dtype=np.float64)


class DecisionLog:
    """Builds the commands that append a decision to its stream; 0 as ``max_len`` turns the log off."""

    def __init__(self, namespace: str, *, max_len: int, retention_days: float) -> None:
        self.max_len = max_len
        self._namespace = namespace
        self._keys = {kind: stream_key(namespace, kind).encode() for kind in KINDS}
        self._cap = str(max_len).encode()
        self._retention_ms = round(retention_days * DAY_MS)

    @property
    def enabled(self) -> bool:
        """Whether decisions are logged at all."""
        return self.max_len > 0

    def append_commands(self, entry: Entry) -> list[list[bytes]]:
        """The script call that appends ``entry`` (see the module; nothing when the log is off)."""
        if not self.enabled:
            return []
        kind: Kind = "recommend" if isinstance(entry, RecommendEntry) else "assign"
        entries = customer_entries_key(self._namespace, kind, entry.customer).encode()
        oldest = str(max(round(entry.at * 1000) - self._retention_ms, 0)).encode()
        retention = str(self._retention_ms).encode()
        return [[b"EVAL", APPEND, b"2", self._keys[kind], entries, self._cap, oldest, retention, FIELD, encode(entry)]]
