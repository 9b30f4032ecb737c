"""Event features online: how an event changes an entity's state hash, and how the hash reads back as features.

An entity's event state lives in a hash of its own (beside its packed snapshot, in the same cluster slot), in
four kinds of field:

- ``{series}@{day}``: a running total for one UTC day (``n|login|`` counts logins, ``s.score|sentiment|``
  sums sentiment scores, ``n.score|sentiment|`` counts the scores summed). A window of N days sums the day
  fields of the N days ending today, so late events land in their own day and windows slide without any job.
- ``last|{event}``: ``{occurred_at in µs, 20 digits}|{event_id}`` of the newest event of a type; the text
  compares the way the offline store orders (time, then event id).
- ``lv|{event}|{field}``: that newest event's field, for ``last`` features.
- ``sw|{series}``: the day up to which the series' old day fields were deleted (housekeeping only).

Applying a batch of events is one Lua script call: it checks each event id against a per-entity sorted set of
seen ids (so a retried event counts once), adds to the day totals, deletes day fields that no window can
reach any more, and replaces the newest-event fields only when the event is newer. The arithmetic mirrors
:mod:`features.offline_store`'s SQL, and a parity test holds the two together.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from features.registry import DAY_SECONDS, EntitySchema, Feature

# Day fields no window can reach are deleted when the series is next written: the sweep starts where the last
# one stopped (``sw|{series}``), so each day field is deleted once and an event costs O(1) deletions.

APPLY_EVENTS = """
-- Applies a batch of events, each at most once. KEYS: per entity, its state hash then its seen-id sorted set.
-- ARGV[1]: the horizon (epoch seconds); then per event:
--   key index (1-based pair), event_id, occurred_at_s, stamp_field, stamp,
--   n_incr, (series, day, window_days, amount)*, n_set, (field, value)*
-- Returns one integer per event: 1 applied, 0 already seen.
local horizon = ARGV[1]
local trimmed = {}
local out = {}
local i = 2
local function sweep(h, series, upto)
  local mark = 'sw|' .. series
  local from = tonumber(redis.call('HGET', h, mark))
  if not from then
    -- Materialization marks every series it writes, and a series begun by live events is marked from its
    -- first event, so an unmarked series holds nothing this old: mark it without a sweep.
    redis.call('HSET', h, mark, upto)
    return
  end
  if upto <= from then return end
  from = math.max(from, upto - 400)
  local fields = {}
  for d = from + 1, upto do fields[#fields + 1] = series .. '@' .. d end
  redis.call('HDEL', h, unpack(fields))
  redis.call('HSET', h, mark, upto)
end
while i <= #ARGV do
  local k = tonumber(ARGV[i]) * 2
  local h, seen = KEYS[k - 1], KEYS[k]
  local id, at, stamp_field, stamp = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local n_incr = tonumber(ARGV[i + 5])
  i = i + 6
  local fresh = not redis.call('ZSCORE', seen, id)
  if fresh then
    redis.call('ZADD', seen, at, id)
    if not trimmed[seen] then
      redis.call('ZREMRANGEBYSCORE', seen, '-inf', '(' .. horizon)
      trimmed[seen] = true
    end
    for _ = 1, n_incr do
      local series, day, days = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
      redis.call('HINCRBYFLOAT', h, series .. '@' .. day, ARGV[i + 3])
      sweep(h, series, day - days)
      i = i + 4
    end
  else
    i = i + 4 * n_incr
  end
  local n_set = tonumber(ARGV[i])
  i = i + 1
  if fresh then
    local current = redis.call('HGET', h, stamp_field)
    if (not current) or current < stamp then
      redis.call('HSET', h, stamp_field, stamp)
      for j = i, i + 2 * n_set - 1, 2 do
        if ARGV[j + 1] == '' then
          redis.call('HDEL', h, ARGV[j])
        else
          redis.call('HSET', h, ARGV[j], ARGV[j + 1])
        end
      end
    end
  end
  i = i + 2 * n_set
  out[#out + 1] = fresh and 1 or 0
end
return out
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


@dataclass(frozen=True, slots=True)
class _Step:
    """How :meth:`EventLayout.decode` computes one feature, resolved from the contract once."""

    kind: str
    event: str
    series: str
    count_series: str
    window_days: int
    value_field: str
    ttl_s: float
    missing: float
    encode: Callable[[str | None], float]


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
        self._plan = [self._step(f) for f in self.features]

    def _step(self, feature: Feature) -> _Step:
        agg = feature.aggregation
        assert agg is not None
        return _Step(
            kind=agg.kind,
            event=agg.event,
            series=agg.series if agg.window_days is not None else "",
            count_series=agg.count_series if agg.kind == "mean" else "",
            window_days=agg.window_days or 0,
            value_field=f"lv|{agg.event}|{agg.field}",
            ttl_s=self.ttl_s[feature.name],
            missing=feature.encode(None),
            encode=feature.encode,
        )

    @property
    def events(self) -> tuple[str, ...]:
        """Event types this entity's features read."""
        return tuple(self.last_fields)

    # ---- reading -----------------------------------------------------------------------------------

    def decode(
        self, state: Mapping[bytes, bytes], now: float
    ) -> tuple[np.ndarray, np.ndarray, dict[str, float | None]]:
        """Feature values (registry order of the event features), which are known, and each view's age.

        ``state`` is the entity's whole state hash (``HGETALL``): day fields outside every window and the
        sweep marks are skipped, so the hash may hold more than the read needs.
        """
        today = int(now // DAY_SECONDS)
        buckets: dict[str, list[tuple[int, float]]] = {s.name: [] for s in self.series}
        newest: dict[str, float] = {}
        latest_value: dict[str, bytes] = {}
        for raw_key, raw_value in state.items():
            key = raw_key.decode()
            series, at, day = key.rpartition("@")
            if at:
                if series in buckets:
                    buckets[series].append((int(day), float(raw_value)))
            elif key.startswith("last|"):
                newest[key[5:]] = _stamp_seconds(raw_value)
            elif key.startswith("lv|"):
                latest_value[key] = raw_value
        for days in buckets.values():
            days.sort()
        values = np.empty(len(self.features), dtype=np.float64)
        known = np.ones(len(self.features), dtype=bool)
        for i, step in enumerate(self._plan):
            if step.window_days:
                # Summed oldest day first, as the first encoding did, so totals stay bit-equal to the offline join.
                first = today - step.window_days + 1
                total = sum(v for d, v in buckets[step.series] if first <= d <= today)
                if step.kind == "mean":
                    count = sum(v for d, v in buckets[step.count_series] if first <= d <= today)
                    values[i] = total / count if count else step.missing
                    known[i] = bool(count)
                else:
                    values[i] = total
                continue
            seen = newest.get(step.event)
            if seen is None or now - seen > step.ttl_s:
                values[i], known[i] = step.missing, False
            elif step.kind == "days_since":
                values[i] = math.floor((now - seen) / DAY_SECONDS)
            else:
                raw = latest_value.get(step.value_field)
                values[i] = step.encode(None if raw is None else raw.decode())
                known[i] = raw is not None
        ages: dict[str, float | None] = {}
        for view, events in self.view_events.items():
            stamps = [t for e in events if (t := newest.get(e)) is not None]
            ages[view] = max(0.0, now - max(stamps)) if stamps else None
        return values, known, ages

    # ---- writing -----------------------------------------------------------------------------------

    def apply_args(self, event: Event) -> list[str]:
        """The per-event part of :data:`APPLY_EVENTS`'s ARGV (after the key index, event id and time)."""
        day = int(event.occurred_at // DAY_SECONDS)
        increments: list[str] = []
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
            increments += [s.name, str(day), str(s.days), text(amount)]
        sets: list[str] = []
        for f in self.last_fields.get(event.type, ()):
            value = event.fields.get(f)
            sets += [f"lv|{event.type}|{f}", "" if value is None else text(value)]
        return [
            f"last|{event.type}",
            stamp(event.occurred_at, event.event_id),
            str(len(increments) // 4),
            *increments,
            str(len(sets) // 2),
            *sets,
        ]
