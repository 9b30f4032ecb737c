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

An entry has one field, ``d``: a msgpack-encoded :class:`RecommendEntry` or :class:`AssignEntry` (format 3: an
assign entry refers to its agents' feature rows instead of carrying them; format 2 added the champion's
``churn_risk`` to a recommend entry; entries of formats 1 and 2 still decode). Ids and numbers only, never a name,
phone or email: the customer's and the agents' feature vectors travel as float64 bytes in the contract's order
(``feature_contract`` names the order).

The agents' rows are kept once an hour each, not once a decision. An assign scores every eligible agent, and an
agent's row changes only when an event or the daily profile reaches it, so of 4,600 rows in 200 consecutive assigns
of the soak 49 were distinct, while they made 90% of each entry's bytes (and of what Redis held, and of its
append-only file, whose rewrites stalled the answers). The rows of an hour live in one hash
(:func:`features.decision_log_keys.agent_rows_key`) under an id of their content (:func:`row_ids`); an entry lists
its agents' ids, and the appending script stores the rows this process has not stored in that hash yet
(:class:`RowBook`). What it costs: a recommend entry is about 0.9 KB (a customer vector of 40 floats, ~10
candidates); an assign entry about 0.4 KB plus ~45 bytes per eligible candidate agent, so ~5 KB with 100
candidates: at the default cap of 100,000 entries, ~90 MB for recommend and ~0.5 GB for assign with 100
candidates, plus 0.3 KB per distinct agent row an hour.
"""

from __future__ import annotations

import msgspec
import numpy as np

from features.decision_log_keys import KINDS, Kind, agent_rows_key, customer_entries_key, stream_key

FORMAT = 3
FIELD = b"d"
DAY_MS = 86_400_000

_APPEND_ENTRY = b"""
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', ARGV[4], ARGV[5])
redis.call('XTRIM', KEYS[1], 'MINID', ARGV[2])
redis.call('SADD', KEYS[2], id)
redis.call('PEXPIRE', KEYS[2], ARGV[3])
"""
# KEYS: the stream, the customer's set of entry ids. ARGV: the cap, the oldest entry id to keep (ms), the
# retention (ms), the field, the entry. Returns the entry's id.
APPEND = _APPEND_ENTRY + b"return id\n"
# KEYS: as APPEND's, then the hour's book of agent rows. ARGV: as APPEND's, then the ids of the rows to store (8 bytes
# each), the rows (float64, one after another), a row's bytes, the book's expiry (ms), and the book's epoch as the
# caller last saw it, or '' when it sends every row the entry names. The epoch, under the empty field, is the id of
# the entry that made the book: when it is not the one given, the book was lost and rows the caller left out are
# missing, so nothing is appended and 0 is the answer (the caller sends them all). Else the entry's id and the epoch.
APPEND_ASSIGN = (
    b"""
if ARGV[10] ~= '' and redis.call('HGET', KEYS[3], '') ~= ARGV[10] then
  return 0
end
"""
    + _APPEND_ENTRY
    + b"""
redis.call('HSETNX', KEYS[3], '', id)
local ids, rows, width = ARGV[6], ARGV[7], tonumber(ARGV[8])
for i = 0, #ids / 8 - 1 do
  redis.call('HSETNX', KEYS[3], string.sub(ids, i * 8 + 1, i * 8 + 8), string.sub(rows, i * width + 1, (i + 1) * width))
end
if redis.call('PTTL', KEYS[3]) < 0 then
  redis.call('PEXPIRE', KEYS[3], ARGV[9])
end
return {id, redis.call('HGET', KEYS[3], '')}
"""
)
_SALTS = np.random.default_rng(20261205).integers(0, 2**63, 4096, dtype=np.uint64)
_MIX = (np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))
HOUR_S = 3_600


def row_ids(rows: np.ndarray) -> np.ndarray:
    """An id of each float64 row's bytes (uint64), the same in every process (the salts come from a fixed seed), so
    the replicas of the service share an hour's book.

    Each 8-byte word is salted by its column and mixed (SplitMix64's finalizer, a bijection), and a row's words
    summed: rows that differ in any bit get different ids but for a chance of 2^-64 a pair, and an hour's book
    holds thousands of rows. 14 us for 100 agents, where hashing each row's bytes took 64 us.
    """
    words = rows.view(np.uint64) ^ _SALTS[: rows.shape[1]]
    words ^= words >> np.uint64(30)
    words *= _MIX[0]
    words ^= words >> np.uint64(27)
    words *= _MIX[1]
    words ^= words >> np.uint64(31)
    return words.sum(axis=1, dtype=np.uint64)


def hour_of(at: float) -> int:
    """The hour (since the epoch) whose book an entry made at ``at`` refers to."""
    return int(at // HOUR_S)


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


class AssignEntry(msgspec.Struct, tag="assign", frozen=True, omit_defaults=True):
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
    """The eligible candidates (the hard constraints passed), in the champion's order."""
    churn_risk: float | None
    ranking: list[RankedAgent]
    served: str
    served_propensity: float
    policy: list[float]
    """The serving policy's probability of putting each of ``ranking``'s first agents first (the rest: 0)."""
    models: dict[str, str]
    feature_contract: str
    row_ids: bytes = b""
    """The ids (:func:`row_ids`, uint64) of ``agents``' feature rows, one per agent in their order, in the book of
    :attr:`rows_hour` (format 3)."""
    agent_rows: bytes = b""
    """The agents' feature rows themselves, float64, one per agent in the contract's order (formats 1 and 2)."""

    @property
    def rows_hour(self) -> int:
        """The hour whose book holds the rows: the decision's own."""
        return hour_of(self.at)

    def row_fields(self) -> list[bytes]:
        """The fields of the rows in their book, one per agent in order."""
        ids = self.row_ids
        return [ids[i : i + 8] for i in range(0, len(ids), 8)]


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


class RowBook:
    """The agents' rows this process has stored in the current hour's book, so an entry sends only the new ones.

    It trusts the book to keep what it was given, and checks: an entry that leaves rows out names the book's epoch
    as last answered, and the appending script refuses it when the book has another (it was lost, by a flush or a
    restart without persistence, and made again, or not yet); the entry is then sent again with every row.
    """

    def __init__(self) -> None:
        self.hour = -1
        self.epoch: bytes | None = None
        """The book's epoch as the last append answered it (None: no answer yet this hour)."""
        self._stored: set[int] = set()

    def unsent(self, hour: int, ids: np.ndarray) -> np.ndarray:
        """Which of ``ids`` (rows of an entry of ``hour``) to send; they count as stored from now on."""
        if hour != self.hour:
            self.hour, self.epoch, self._stored = hour, None, set()
        stored = self._stored
        listed = ids.tolist()
        if stored.issuperset(listed):  # the rule once the hour's rows are in: an agent's row seldom changes
            return np.zeros(len(listed), dtype=bool)
        unsent = np.fromiter((i not in stored for i in listed), dtype=bool, count=len(listed))
        stored.update(listed)
        return unsent

    def answered(self, hour: int, epoch: bytes | None) -> None:
        """The book's epoch as an append of ``hour`` answered it; None when the append failed or was refused, so
        the rows it carried or named may not be there: every row is sent again."""
        if hour != self.hour:
            return
        if epoch is None or (self.epoch is not None and epoch != self.epoch):
            self._stored = set()
        self.epoch = epoch


class DecisionLog:
    """Builds the commands that append a decision to its stream; 0 as ``max_len`` turns the log off."""

    def __init__(self, namespace: str, *, max_len: int, retention_days: float) -> None:
        self.max_len = max_len
        self._namespace = namespace
        self._keys = {kind: stream_key(namespace, kind).encode() for kind in KINDS}
        self._cap = str(max_len).encode()
        self._retention_ms = round(retention_days * DAY_MS)
        self._rows_ttl = str(self._retention_ms + DAY_MS).encode()
        self.book = RowBook()

    @property
    def enabled(self) -> bool:
        """Whether decisions are logged at all."""
        return self.max_len > 0

    def append_commands(self, entry: Entry, rows: np.ndarray | None = None) -> list[list[bytes]]:
        """The script call that appends ``entry`` (see the module; nothing when the log is off). An assign entry
        comes with its agents' ``rows`` (float64, C order), which its ``row_ids`` name; the script stores those
        the book does not hold yet, and its answer goes to :meth:`RowBook.answered`."""
        if not self.enabled:
            return []
        kind: Kind = "recommend" if isinstance(entry, RecommendEntry) else "assign"
        entries = customer_entries_key(self._namespace, kind, entry.customer).encode()
        oldest = str(max(round(entry.at * 1000) - self._retention_ms, 0)).encode()
        retention = str(self._retention_ms).encode()
        keys, argv = [self._keys[kind], entries], [self._cap, oldest, retention, FIELD, encode(entry)]
        if isinstance(entry, RecommendEntry):
            return [[b"EVAL", APPEND, b"2", *keys, *argv]]
        if rows is None:
            raise ValueError("an assign entry is appended with its agents' rows")
        ids = np.frombuffer(entry.row_ids, dtype=np.uint64)
        unsent = self.book.unsent(entry.rows_hour, ids)
        book = agent_rows_key(self._namespace, entry.rows_hour).encode()
        seen = b"" if unsent.all() or self.book.epoch is None else self.book.epoch
        return [
            [
                b"EVAL",
                APPEND_ASSIGN,
                b"3",
                *keys,
                book,
                *argv,
                ids[unsent].tobytes(),
                rows[unsent].tobytes(),
                str(rows.shape[1] * 8).encode(),
                self._rows_ttl,
                seen,
            ]
        ]

    def answered(self, entry: AssignEntry, rows: np.ndarray, reply: object | None) -> list[list[bytes]]:
        """What to send again after the append of ``entry`` answered ``reply`` (None: it failed): nothing, or the
        entry with all its ``rows`` when the script refused it for rows its book had lost (see :data:`APPEND_ASSIGN`).
        """
        if isinstance(reply, list):
            self.book.answered(entry.rows_hour, reply[1])
            return []
        self.book.answered(entry.rows_hour, None)
        return [] if reply is None else self.append_commands(entry, rows)
