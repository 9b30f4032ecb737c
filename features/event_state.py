"""Event features online: how an event changes an entity's hash, and how the hash reads back as features.

An entity's event state lives in its own feature hash (same key, same cluster slot), in three kinds of field:

- ``{series}@{day}``: a running total for one UTC day (``n|login|`` counts logins, ``s.score|sentiment|``
  sums sentiment scores, ``n.score|sentiment|`` counts the scores summed). A window of N days reads the N
  day fields ending today, so late events land in their own day and windows slide without any job.
- ``last|{event}``: ``{occurred_at in µs, 20 digits}|{event_id}`` of the newest event of a type; the text
  compares the way the offline store orders (time, then event id).
- ``lv|{event}|{field}``: that newest event's field, for ``last`` features.

Applying an event is one Lua script: it checks the event id against a per-entity sorted set of seen ids (so
a retried event counts once), adds to the day totals, and replaces the newest-event fields only when the
event is newer. The arithmetic mirrors :mod:`features.offline_store`'s SQL, and a parity test holds the two
together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from features.registry import DAY_SECONDS, EntitySchema, Feature

# Day fields this many days behind a window are swept when the series is next written, so a hash does not
# keep a field per day forever.
_SWEEP_DAYS = 31

APPLY_EVENT = """
-- KEYS[1]: the entity's feature hash; KEYS[2]: its sorted set of seen event ids (score = occurred_at)
-- ARGV: event_id, occurred_at_s, horizon_s, stamp_field, stamp, n_incr, (field, amount)*, n_set, (field, value)*,
--       n_sweep, field*
if redis.call('ZSCORE', KEYS[2], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[3])
local i = 7
for _ = 1, tonumber(ARGV[6]) do
  redis.call('HINCRBYFLOAT', KEYS[1], ARGV[i], ARGV[i + 1])
  i = i + 2
end
local n_set = tonumber(ARGV[i])
i = i + 1
local current = redis.call('HGET', KEYS[1], ARGV[4])
if (not current) or current < ARGV[5] then
  redis.call('HSET', KEYS[1], ARGV[4], ARGV[5])
  for _ = 1, n_set do
    if ARGV[i + 1] == '' then
      redis.call('HDEL', KEYS[1], ARGV[i])
    else
      redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    end
    i = i + 2
  end
else
  i = i + 2 * n_set
end
local n_sweep = tonumber(ARGV[i])
if n_sweep > 0 then
  redis.call('HDEL', KEYS[1], unpack(ARGV, i + 1, i + n_sweep))
end
return 1
"""


@dataclass(frozen=True)
class Event:
    """One validated event, as the online and offline stores take it."""

    event_id: str
    entity_id: str
    type: str
    occurred_at: float
    """Epoch seconds (UTC)."""
    fields: dict[str, object] = field(default_factory=dict)


def stamp(occurred_at: float, event_id: str) -> str:
    """The sortable text of an event's moment: microseconds, then the id for ties."""
    return f"{round(occurred_at * 1_000_000):020d}|{event_id}"


def _stamp_seconds(text: bytes | str) -> float:
    raw = text.decode() if isinstance(text, bytes) else text
    return int(raw.split("|", 1)[0]) / 1_000_000


def text(value: object) -> str:
    """A value as the hash stores it; materialization and live events must write the same text."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return repr(value)
    return str(value)


@dataclass(frozen=True)
class _Series:
    name: str
    event: str
    where: tuple[tuple[str, bool | str], ...]
    field: str | None
    """None: counts events; a field name: sums it (``s.``) or counts its presence (``n.``)."""
    sums: bool
    days: int


class EventLayout:
    """The event state of one entity kind, compiled from the contract once."""

    def __init__(self, schema: EntitySchema) -> None:
        self.features: tuple[Feature, ...] = schema.event_features
        series: dict[str, _Series] = {}
        last_fields: dict[str, set[str]] = {}
        for f in self.features:
            agg = f.aggregation
            assert agg is not None
            where = tuple(sorted(agg.where.items()))
            if agg.window_days is not None:
                names = [(agg.series, agg.kind != "count")]
                if agg.kind == "mean":
                    names.append((agg.count_series, False))
                for name, sums in names:
                    days = max(agg.window_days, series[name].days if name in series else 0)
                    measure = None if agg.kind == "count" else agg.field
                    series[name] = _Series(name, agg.event, where, measure, sums, days)
            else:
                last_fields.setdefault(agg.event, set())
                if agg.kind == "last" and agg.field is not None:
                    last_fields[agg.event].add(agg.field)
            last_fields.setdefault(agg.event, set())
        self.series = tuple(series.values())
        self.last_fields = {e: tuple(sorted(fs)) for e, fs in last_fields.items()}
        self.ttl_s = {f.name: schema.view_for(f).ttl_seconds for f in self.features}
        self.view_events = {
            v.name: tuple(sorted({f.aggregation.event for f in v.features if f.aggregation}))
            for v in schema.views
            if v.source == "events"
        }
        self.horizon_days = schema.event_horizon_days

    @property
    def events(self) -> tuple[str, ...]:
        """Event types this entity's features read."""
        return tuple(self.last_fields)

    # ---- reading -----------------------------------------------------------------------------------

    @lru_cache(maxsize=2)  # noqa: B019 - two days at most, one layout per process
    def read_fields(self, today: int) -> tuple[str, ...]:
        """The hash fields a read on UTC day ``today`` asks for (changes once a day, so cached)."""
        buckets = [f"{s.name}@{day}" for s in self.series for day in range(today - s.days + 1, today + 1)]
        stamps = [f"last|{e}" for e in self.last_fields]
        values = [f"lv|{e}|{f}" for e, fs in self.last_fields.items() for f in fs]
        return (*buckets, *stamps, *values)

    def decode(self, reply: list[bytes | None], now: float) -> tuple[np.ndarray, np.ndarray, dict[str, float | None]]:
        """Feature values (registry order of the event features), which are known, and each view's age."""
        offset = 0
        totals: dict[str, list[float]] = {}
        for s in self.series:
            totals[s.name] = [float(v) if v is not None else 0.0 for v in reply[offset : offset + s.days]]
            offset += s.days
        newest: dict[str, float | None] = {}
        for e in self.last_fields:
            raw = reply[offset]
            offset += 1
            newest[e] = None if raw is None else _stamp_seconds(raw)
        latest_value: dict[tuple[str, str], bytes | None] = {}
        for e, fs in self.last_fields.items():
            for f in fs:
                latest_value[(e, f)] = reply[offset]
                offset += 1
        values = np.empty(len(self.features), dtype=np.float64)
        known = np.ones(len(self.features), dtype=bool)
        for i, feature in enumerate(self.features):
            agg = feature.aggregation
            assert agg is not None
            if agg.window_days is not None:
                days = agg.window_days
                total = sum(totals[agg.series][-days:])
                if agg.kind == "mean":
                    count = sum(totals[agg.count_series][-days:])
                    values[i] = total / count if count else feature.encode(None)
                    known[i] = bool(count)
                else:
                    values[i] = total
                continue
            seen = newest[agg.event]
            if seen is None or now - seen > self.ttl_s[feature.name]:
                values[i], known[i] = feature.encode(None), False
            elif agg.kind == "days_since":
                values[i] = math.floor((now - seen) / DAY_SECONDS)
            else:
                assert agg.field is not None
                raw = latest_value[(agg.event, agg.field)]
                values[i] = feature.encode(None if raw is None else raw.decode())
                known[i] = raw is not None
        ages: dict[str, float | None] = {}
        for view, events in self.view_events.items():
            stamps = [t for e in events if (t := newest.get(e)) is not None]
            ages[view] = max(0.0, now - max(stamps)) if stamps else None
        return values, known, ages

    # ---- writing -----------------------------------------------------------------------------------

    def apply_args(self, event: Event) -> list[str]:
        """ARGV for :data:`APPLY_EVENT` (after the event id, time and horizon)."""
        day = int(event.occurred_at // DAY_SECONDS)
        increments: list[str] = []
        sweep: list[str] = []
        for s in self.series:
            if s.event != event.type or any(event.fields.get(k) != v for k, v in s.where):
                continue
            if s.field is None:
                amount: object = 1
            else:
                value = event.fields.get(s.field)
                if value is None:
                    continue
                amount = value if s.sums else 1
            increments += [f"{s.name}@{day}", text(amount)]
            sweep += [f"{s.name}@{d}" for d in range(day - s.days - _SWEEP_DAYS, day - s.days + 1)]
        sets: list[str] = []
        for f in self.last_fields.get(event.type, ()):
            value = event.fields.get(f)
            sets += [f"lv|{event.type}|{f}", "" if value is None else text(value)]
        return [
            f"last|{event.type}",
            stamp(event.occurred_at, event.event_id),
            str(len(increments) // 2),
            *increments,
            str(len(sets) // 2),
            *sets,
            str(len(sweep)),
            *sweep,
        ]
