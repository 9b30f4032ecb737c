"""Event features online: an entity's event state as one fixed-layout binary string, and how it reads back.

Layout (little-endian; the float64 slots come after an 8-byte tag, like :mod:`features.packed`)::

    tag | ring 1 | ring 2 | ... | last group 1 | last group 2 | ... || id 1 | id 2 | ...

- The **tag** is a hash of this layout (entity, series, windows, groups, fields and their encodings). A reader
  or a script built from another contract finds a different tag and treats the value as absent (the script
  starts it over), so a contract change reads as a cold start, never as one feature's number read as another's.
- A **ring** holds the day totals of the series of one event type that need the same number of days ``W``
  (the longest window any feature reads from them): a header slot, the newest day the ring holds (UTC days
  since 1970), then ``W`` slots of ``k`` float64 (one per series: ``count``, ``sum`` of a field, or the count of
  the events carrying it, each possibly narrowed by a ``where``). Day ``d`` sits in slot ``d mod W`` while
  ``newest - W < d <= newest``. An event of a day newer than the header advances it and zeroes the slots of the
  days in between (their old contents are out of every window); an event of a day at or before ``newest - W``
  can change no window and is dropped; any other adds to its day. So windows slide with no sweeping job, and a
  late event still lands in its own day. One header per ring rather than a day per slot: half the bytes.
- A **last group** is one (event type, ``where``) that a ``last`` or ``days_since`` reads, plus one unfiltered
  group per event type read at all (its stamp says how old the view is): the newest event's time in
  microseconds as float64 (exact below 2**53, about year 2255; 0 = never), then one float64 per field read,
  already encoded as the model reads it (category index, 0/1, number), NaN when the newest event lacks it.
  A category value the contract does not know is stored as -1: it reads as unknown but, unlike a missing
  field, is not replaced by the default, as the offline join has it.
- After the fixed part, the **ids**: the event id of each group with fields, NUL-padded to
  :data:`ID_BYTES`. Only the script reads them, to break a tie between two events of the same microsecond the
  way the offline store orders (``occurred_at, event_id``); a read asks ``GETRANGE`` for the fixed part only.
  Last, a float64 only the script uses: the day it last trimmed the entity's seen ids.

Why this and not the hash of ``{series}@{day}`` fields it replaces: a read is one ``GETRANGE`` of a few
kilobytes that numpy turns into every event feature of N entities at once (window sums by precomputed index
arrays and masks), where the hash cost an ``HGETALL`` of hundreds of fields and a Python loop over them; and
materialization is one ``MSET`` of rows built by numpy. What it gives up: the bytes are not readable with
``redis-cli`` (``nba features`` and ``GET /v1/customers/{id}/features`` are), and every customer with events
holds every ring whole (a few kilobytes) however few events they have. An event stamped on a day after the
day of a read (a clock ahead by minutes near midnight) moves its rings on early: until the reader's day
catches up, the oldest day of the longest windows reads as empty.

Applying a batch of events is one Lua script call (:data:`APPLY_EVENTS`): a per-entity sorted set of seen ids
makes a retried event count once, then Lua's ``struct`` updates the rings and groups the event reaches in the
entity's value, read once and written once per call. The arithmetic mirrors :mod:`features.offline_store`'s
SQL; a parity test holds the two together.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from features.registry import DAY_SECONDS, EntitySchema, Feature

TAG_BYTES = 8
ID_BYTES = 64
"""Room for one event id in the tail; the API's id pattern allows at most 64 ASCII characters."""
UNKNOWN_CATEGORY = -1.0
"""A `last` category value the contract does not list: unknown, but present (no default stands in)."""
_F8 = np.dtype("<f8")

APPLY_EVENTS = """
-- Applies a batch of events, each at most once. KEYS: per entity, its state string then its seen-id sorted set.
-- ARGV[1]: the horizon (epoch seconds); ARGV[2]: the layout's tag; ARGV[3]: the state's size in bytes;
-- ARGV[4]: the bytes kept per event id; ARGV[5]: as many NUL bytes as the state's size (Lua 5.1's string.rep
-- builds a string a byte at a time: a few kilobytes of it cost more than the rest of an event); then per event:
-- key index (1-based pair), event_id, occurred_at (s), and its changes as float64s (see EventLayout.changes):
-- day, the byte offset and length of the event type's segment, rings, groups, then per ring (header offset in
-- the segment, W, k, k amounts) and per group (stamp offset in the segment, id offset in the value or -1, m,
-- stamp, m values).
-- Returns one integer per event: 1 applied, 0 seen before.
--
-- Each entity's value is read once (GET), changed in Lua and written once (SET) per call: a redis.call costs
-- more than rebuilding a few-kilobyte string, so an event costs its ZADD and a share of its entity's GET/SET.
local horizon, tag, size, id_bytes, zeros = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local horizon_day = math.floor(tonumber(horizon) / 86400)
local trim_at = size - 8
local formats = {}
local function doubles(n)
  local f = formats[n]
  if not f then f = '<' .. string.rep('d', n); formats[n] = f end
  return f
end
-- Bytewise, not Lua's `>`: that one calls strcoll, and Redis takes LC_COLLATE from its environment.
local function after(a, b)
  for j = 1, #a do
    local x, y = string.byte(a, j), string.byte(b, j)
    if x ~= y then return x > y end
  end
  return false
end
local function put(s, at, bytes)
  return string.sub(s, 1, at) .. bytes .. string.sub(s, at + #bytes + 1)
end
local function apply(value, id, blob)
  local day, start, len, rings, groups, pos = struct.unpack('<ddddd', blob)
  local seg = string.sub(value, start + 1, start + len)
  for _ = 1, rings do
    local off, w, k, p = struct.unpack('<ddd', blob, pos)
    local stride = 8 * k
    local newest = struct.unpack('<d', seg, off + 1)
    if day > newest - w then
      local at = off + 8 + (day % w) * stride
      local amounts = string.sub(blob, p, p + stride - 1)
      if day > newest then
        -- The days between are empty: zero their slots (they held days out of every window).
        local gap = math.min(day - newest, w)
        local first = (newest + 1) % w
        local run = math.min(gap, w - first)
        seg = put(seg, off + 8 + first * stride, string.sub(zeros, 1, run * stride))
        if gap > run then seg = put(seg, off + 8, string.sub(zeros, 1, (gap - run) * stride)) end
        seg = put(seg, off, struct.pack('<d', day))
      else
        local old = {struct.unpack(doubles(k), seg, at + 1)}
        local new = {struct.unpack(doubles(k), amounts)}
        for c = 1, k do new[c] = old[c] + new[c] end
        amounts = struct.pack(doubles(k), unpack(new, 1, k))
      end
      seg = put(seg, at, amounts)
    end
    pos = p + stride
  end
  local ids = {}
  for _ = 1, groups do
    local off, id_at, m, p = struct.unpack('<ddd', blob, pos)
    local us = struct.unpack('<d', blob, p)
    local held = struct.unpack('<d', seg, off + 1)
    local newer = us > held
    if us == held and id_at >= 0 then
      newer = after(id, string.sub(value, id_at + 1, id_at + id_bytes))
    end
    if newer then
      seg = put(seg, off, string.sub(blob, p, p + 8 * (m + 1) - 1))
      if id_at >= 0 then ids[#ids + 1] = id_at end
    end
    pos = p + 8 * (m + 1)
  end
  value = put(value, start, seg)
  for _, at in ipairs(ids) do value = put(value, at, id) end
  return value
end
local values = {}
local touched = {}
local trimmed = {}
local out = {}
for i = 6, #ARGV, 4 do
  local n = tonumber(ARGV[i]) * 2
  local key, seen, id, blob = KEYS[n - 1], KEYS[n], ARGV[i + 1], ARGV[i + 3]
  local fresh = redis.call('ZADD', seen, 'NX', ARGV[i + 2], id) == 1
  if fresh and #blob > 40 then
    local value = values[key]
    if not value then
      value = redis.call('GET', key)
      -- The tag names the layout: a value of another layout (or none) starts over empty.
      if (not value) or #value ~= size or string.sub(value, 1, 8) ~= tag then
        value = tag .. string.sub(zeros, 9)
      end
      -- The seen ids older than the horizon go once a day per entity; the day of the last trim is kept last.
      if struct.unpack('<d', value, trim_at + 1) < horizon_day then
        redis.call('ZREMRANGEBYSCORE', seen, '-inf', '(' .. horizon)
        value = put(value, trim_at, struct.pack('<d', horizon_day))
      end
      trimmed[seen] = true
      touched[#touched + 1] = key
    end
    values[key] = apply(value, id .. string.sub(zeros, 1, id_bytes - #id), blob)
  elseif fresh and not trimmed[seen] then
    -- An event no feature reads (an identity event) creates no state; its entity's seen ids are trimmed here.
    redis.call('ZREMRANGEBYSCORE', seen, '-inf', '(' .. horizon)
    trimmed[seen] = true
  end
  out[#out + 1] = fresh and 1 or 0
end
for _, key in ipairs(touched) do redis.call('SET', key, values[key]) end
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


def stamp_us(occurred_at: float) -> int:
    """An event's moment in whole microseconds, the precision the offline store keeps."""
    return round(occurred_at * 1_000_000)


def padded_id(event_id: str) -> bytes:
    """An event id as the tail keeps it: NUL-padded to :data:`ID_BYTES` (NUL sorts first, so padded ids
    compare as the ids do)."""
    raw = event_id.encode()
    if len(raw) > ID_BYTES or b"\0" in raw:
        raise ValueError(f"event_id {event_id!r}: at most {ID_BYTES} bytes and no NUL")
    return raw.ljust(ID_BYTES, b"\0")


@dataclass(frozen=True)
class Series:
    """One running total per day: events of a type (matching ``where``) counted, or a field summed or counted."""

    name: str
    event: str
    where: tuple[tuple[str, bool | str], ...]
    field: str | None
    """None: counts events; a field name: sums it (``sums``) or counts the events carrying it."""
    sums: bool
    days: int

    def amount(self, event: Event) -> float | None:
        """What ``event`` adds to this series' day, or None when it is not one of the series' events."""
        if event.type != self.event or any(event.fields.get(k) != v for k, v in self.where):
            return None
        if self.field is None:
            return 1.0
        value = event.fields.get(self.field)
        if value is None:
            return None
        return float(value) if self.sums else 1.0  # type: ignore[arg-type]


@dataclass(frozen=True)
class Ring:
    """The series of one event type kept over the same number of days, side by side in one ring."""

    event: str
    days: int
    series: tuple[Series, ...]
    slot: int
    """The header's slot (the newest day held); the days follow, ``len(series)`` slots each."""

    @property
    def width(self) -> int:
        """Slots the ring takes, header included."""
        return 1 + self.days * len(self.series)


@dataclass(frozen=True)
class LastValue:
    """One field of a group's newest event, encoded by (the first of) the features reading it."""

    field: str
    feature: Feature

    def encode(self, raw: object) -> float:
        """The stored float: NaN when absent, :data:`UNKNOWN_CATEGORY` for a category the contract lacks."""
        if raw is None or raw == "":
            return math.nan
        value = self.feature.encode(raw, apply_default=False)  # type: ignore[arg-type]
        return UNKNOWN_CATEGORY if math.isnan(value) and self.feature.dtype == "category" else value


@dataclass(frozen=True)
class LastGroup:
    """The newest event of a type matching ``where``, and the fields features read from it."""

    event: str
    where: tuple[tuple[str, bool | str], ...]
    values: tuple[LastValue, ...]
    slot: int
    """The stamp's slot; the values follow."""
    id_at: int
    """Byte offset of its event id in the value, -1 when no field is kept (a tie cannot change a stamp)."""

    def matches(self, event: Event) -> bool:
        """Whether ``event`` is one of this group's."""
        return event.type == self.event and all(event.fields.get(k) == v for k, v in self.where)


def _encoding(feature: Feature) -> tuple[str, tuple[str, ...] | None]:
    return feature.dtype, feature.categories


class EventLayout:
    """The event state of one entity kind, compiled from the contract once: where everything sits, and the
    index arrays that turn N state strings into feature matrices."""

    def __init__(self, schema: EntitySchema) -> None:
        self.features: tuple[Feature, ...] = schema.event_features
        self.horizon_days = schema.event_horizon_days
        self.timeless = schema.timeless_events
        """Event types no horizon applies to (see :attr:`EntitySchema.timeless_events`)."""
        series: dict[str, Series] = {}
        groups: dict[tuple[str, tuple[tuple[str, bool | str], ...]], dict[tuple[object, ...], LastValue]] = {}
        for f in self.features:
            agg = f.aggregation
            assert agg is not None
            where = tuple(sorted(agg.where.items()))
            groups.setdefault((agg.event, ()), {})
            if agg.window_days is not None:
                names = [(agg.series, agg.kind != "count")]
                if agg.kind == "mean":
                    names.append((agg.count_series, False))
                for name, sums in names:
                    days = max(agg.window_days, series[name].days if name in series else 0)
                    measure = None if agg.kind == "count" else agg.field
                    series[name] = Series(name, agg.event, where, measure, sums, days)
            else:
                values = groups.setdefault((agg.event, where), {})
                if agg.kind == "last":
                    assert agg.field is not None
                    values.setdefault((agg.field, *_encoding(f)), LastValue(agg.field, f))
        self.series = tuple(series.values())
        by_ring: dict[tuple[str, int], list[Series]] = {}
        for s in self.series:
            by_ring.setdefault((s.event, s.days), []).append(s)
        # One segment per event type, its rings then its groups: an event's changes are one GETRANGE/SETRANGE.
        events = list(dict.fromkeys([e for e, _ in groups]))
        rings: list[Ring] = []
        lasts: list[LastGroup] = []
        self.segments: dict[str, tuple[int, int]] = {}
        """Per event type: the byte offset and length of the part of the value its events change."""
        slot = ids = 0
        for event in events:
            first = slot
            for (ring_event, days), members in by_ring.items():
                if ring_event == event:
                    rings.append(Ring(event, days, tuple(members), slot))
                    slot += rings[-1].width
            for (group_event, where), values in groups.items():
                if group_event == event:
                    kept = tuple(values.values())
                    lasts.append(LastGroup(event, where, kept, slot, ids if kept else -1))
                    slot += 1 + len(kept)
                    ids += 1 if kept else 0
            self.segments[event] = (TAG_BYTES + 8 * first, 8 * (slot - first))
        self.rings = tuple(rings)
        self.width = slot
        self.size = TAG_BYTES + 8 * slot
        """Bytes of the fixed part, the part a read fetches."""
        self.total_size = self.size + ID_BYTES * ids + 8
        """Bytes of the whole value: the fixed part, the ids, and the day the script last trimmed the seen ids."""
        self.groups = tuple(
            LastGroup(g.event, g.where, g.values, g.slot, self.size + ID_BYTES * g.id_at if g.values else -1)
            for g in lasts
        )
        shape = [
            schema.name,
            [(r.event, r.days, [(s.name, s.days) for s in r.series]) for r in self.rings],
            [(g.event, g.where, [(v.field, *_encoding(v.feature)) for v in g.values]) for g in self.groups],
            ID_BYTES,
        ]
        self.tag = hashlib.sha256(json.dumps(shape).encode()).digest()[:TAG_BYTES]
        self._tag_word = np.frombuffer(self.tag, dtype=np.uint64)[0]
        self._absent = self.tag + bytes(self.size - TAG_BYTES)
        self._writers = {e: _Writer(e, self) for e in events}
        self.view_events = {
            v.name: tuple(sorted({f.aggregation.event for f in v.features if f.aggregation}))
            for v in schema.views
            if v.source == "events"
        }
        self._plan = _Plan(self, schema)

    @property
    def events(self) -> tuple[str, ...]:
        """Event types this entity's features read."""
        return tuple(self.segments)

    def group(self, event: str, where: tuple[tuple[str, bool | str], ...] = ()) -> LastGroup:
        """The last group of ``event`` narrowed by ``where`` (the unfiltered one by default)."""
        return next(g for g in self.groups if g.event == event and g.where == where)

    # ---- writing -----------------------------------------------------------------------------------

    def changes(self, event: Event) -> bytes:
        """What ``event`` does to the state, as :data:`APPLY_EVENTS` reads it (float64s, see its header)."""
        padded_id(event.event_id)  # refused here, before the batch is sent, if the tail cannot hold it
        writer = self._writers.get(event.type)
        if writer is None:
            return struct.pack("<5d", event.occurred_at // DAY_SECONDS, 0, 0, 0, 0)
        return writer.changes(event)

    def empty_rows(self, n: int) -> np.ndarray:
        """The slot matrix of ``n`` entities with no events (every ring empty, every group never seen)."""
        return np.zeros((n, self.width), dtype=_F8)

    def values(self, rows: np.ndarray, ids: np.ndarray) -> list[bytes]:
        """Whole state values from a slot matrix and the tail of ids (``n x groups-with-fields``, ``S64``)."""
        n = rows.shape[0]
        body = np.empty((n, self.total_size), dtype=np.uint8)
        body[:, :TAG_BYTES] = np.frombuffer(self.tag, dtype=np.uint8)
        body[:, TAG_BYTES : self.size] = rows.astype(_F8, copy=False).view(np.uint8).reshape(n, -1)
        body[:, self.size : self.total_size - 8] = ids.view(np.uint8).reshape(n, -1)
        body[:, self.total_size - 8 :] = 0  # never trimmed: the first live event trims the seen ids
        raw = body.tobytes()
        step = self.total_size
        return [raw[i : i + step] for i in range(0, len(raw), step)]

    # ---- reading -----------------------------------------------------------------------------------

    def unpack(self, blobs: Sequence[bytes | None]) -> tuple[np.ndarray, np.ndarray]:
        """The slot matrix (rows x width; an empty state where absent or of another layout), and which were here."""
        size = self.size
        body = b"".join([b if b is not None and len(b) == size else self._absent for b in blobs])
        table = np.frombuffer(body, dtype=_F8).reshape(len(blobs), self.width + 1)
        present = table[:, 0].view(np.uint64) == self._tag_word
        matrix = table[:, 1:]
        if not present.all():
            matrix = np.where(present[:, None], matrix, 0.0)
        return matrix, present

    def decode(
        self, blobs: Sequence[bytes | None], now: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Features of N entities from their state values (the fixed part), as of ``now``.

        Returns values and known (N x event features, registry order), each event view's age in seconds (N x
        event views, NaN where never observed) and whether the entity has any event state at all.
        """
        slots, _ = self.unpack(blobs)
        return self._plan.run(slots, now)


class _Writer:
    """:meth:`EventLayout.changes` for one event type, its offsets resolved once: it runs once per event."""

    def __init__(self, event: str, layout: EventLayout) -> None:
        start, _length = self.segment = layout.segments[event]
        self.rings = [
            (TAG_BYTES + 8 * r.slot - start, r.days, len(r.series), r.series) for r in layout.rings if r.event == event
        ]
        self.groups = [
            (g, TAG_BYTES + 8 * g.slot - start, g.id_at, len(g.values)) for g in layout.groups if g.event == event
        ]

    def changes(self, event: Event) -> bytes:
        parts: list[float] = [event.occurred_at // DAY_SECONDS, *self.segment, 0, 0]
        for offset, days, k, series in self.rings:
            amounts = [s.amount(event) for s in series]
            if any(a is not None for a in amounts):
                parts[3] += 1
                parts += [offset, days, k, *(a or 0.0 for a in amounts)]
        us = float(stamp_us(event.occurred_at))
        for group, offset, id_at, m in self.groups:
            if group.matches(event):
                parts[4] += 1
                parts += [offset, id_at, m, us, *(v.encode(event.fields.get(v.field)) for v in group.values)]
        return struct.pack(f"<{len(parts)}d", *parts)


class _Plan:
    """The index arrays of :meth:`EventLayout.decode`, resolved from the contract once.

    Windowed totals: for each (series, window) a row of ``w_max`` positions, the window's days oldest first
    (left-padded and masked for shorter windows). A day is read from slot ``day mod W`` of its ring when the
    ring still holds it (``newest - W < day <= newest``). The sum runs left to right (``cumsum``), oldest day
    first, the order the offline store's per-day totals were added in before, so totals stay bit-equal.
    """

    def __init__(self, layout: EventLayout, schema: EntitySchema) -> None:
        ring_of = {s.name: (r, r.series.index(s)) for r in layout.rings for s in r.series}
        rows: dict[tuple[str, int], int] = {}

        def row(series: str, window: int) -> int:
            return rows.setdefault((series, window), len(rows))

        direct: list[tuple[int, int]] = []
        means: list[tuple[int, int, int, float]] = []
        lasts: list[tuple[int, int, int, float, float, bool]] = []
        for i, f in enumerate(layout.features):
            agg = f.aggregation
            assert agg is not None
            ttl = schema.view_for(f).ttl_seconds
            if agg.kind in ("count", "sum"):
                direct.append((i, row(agg.series, agg.window_days or 0)))
            elif agg.kind == "mean":
                w = agg.window_days or 0
                means.append((i, row(agg.series, w), row(agg.count_series, w), f.encode(None)))
            else:
                g = layout.group(agg.event, tuple(sorted(agg.where.items())))
                at = -1
                if agg.kind == "last":
                    assert agg.field is not None
                    at = (
                        g.slot
                        + 1
                        + [(v.field, *_encoding(v.feature)) for v in g.values].index((agg.field, *_encoding(f)))
                    )
                lasts.append((i, g.slot, at, ttl, f.encode(None), f.dtype == "category"))
        keys = list(rows)
        rings = [ring_of[s] for s, _ in keys]
        self.n = len(layout.features)
        self.head = np.array([r.slot for r, _ in rings], dtype=np.intp)
        self.base = np.array([r.slot + 1 + c for r, c in rings], dtype=np.int64)
        self.stride = np.array([len(r.series) for r, _ in rings], dtype=np.int64)
        self.ring_days = np.array([r.days for r, _ in rings], dtype=np.int64)
        self.window = np.array([w for _, w in keys], dtype=np.int64)
        self.w_max = int(self.window.max(initial=0))
        self.direct_at = np.array([i for i, _ in direct], dtype=np.intp)
        self.direct_row = np.array([r for _, r in direct], dtype=np.intp)
        self.mean_at, self.mean_sum, self.mean_count = (np.array(c, dtype=np.intp) for c in _columns(means, 3))
        self.mean_missing = np.array([m[3] for m in means], dtype=np.float64)
        self.last_at, self.last_stamp, self.last_value = (np.array(c, dtype=np.intp) for c in _columns(lasts, 3))
        self.last_ttl = np.array([x[3] for x in lasts], dtype=np.float64)
        self.last_missing = np.array([x[4] for x in lasts], dtype=np.float64)
        self.last_category = np.array([x[5] for x in lasts], dtype=bool)
        self.is_days = self.last_value < 0
        self.value_slot = np.where(self.is_days, 0, self.last_value)
        # Each event view's stamps (its event types' unfiltered groups), padded by repeating its first: a max.
        stamps = [[layout.group(e).slot for e in events] for events in layout.view_events.values()]
        widest = max((len(v) for v in stamps), default=0)
        self.view_stamps = np.array([v + v[:1] * (widest - len(v)) for v in stamps], dtype=np.intp)
        self.all_stamps = np.array([g.slot for g in layout.groups if not g.where], dtype=np.intp)
        self.unknown_mark = np.where(self.last_category & ~self.is_days, UNKNOWN_CATEGORY, math.inf)
        """Per `last` feature the stored value that reads as NaN: the unknown-category mark, or nothing."""
        self._today: float | None = None
        self._window_index: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def _windows(self, today: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(days, positions, in-window mask) of every row for ``today``; the last day's arrays are kept."""
        if self._today != today or self._window_index is None:
            days = today - self.w_max + 1 + np.arange(self.w_max, dtype=np.int64)
            positions = self.base[:, None] + (days[None, :] % self.ring_days[:, None]) * self.stride[:, None]
            inside = days[None, :] > today - self.window[:, None]
            self._window_index = (days.astype(np.float64), positions, inside)
            self._today = today
        return self._window_index

    def run(self, slots: np.ndarray, now: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        n = slots.shape[0]
        values = np.empty((n, self.n), dtype=np.float64)
        known = np.ones((n, self.n), dtype=bool)
        if self.w_max:
            days, positions, inside = self._windows(math.floor(now / DAY_SECONDS))
            newest = slots[:, self.head][:, :, None]
            held = inside & (days <= newest) & (days > newest - self.ring_days[:, None])
            totals = np.where(held, slots[:, positions], 0.0).cumsum(axis=2)[:, :, -1]
            values[:, self.direct_at] = totals[:, self.direct_row]
            counts = totals[:, self.mean_count]
            with np.errstate(divide="ignore", invalid="ignore"):
                values[:, self.mean_at] = np.where(counts > 0, totals[:, self.mean_sum] / counts, self.mean_missing)
            known[:, self.mean_at] = counts > 0
        stamps = slots[:, self.last_stamp] / 1_000_000
        age = now - stamps
        fresh = (stamps > 0) & (age <= self.last_ttl)
        raw = slots[:, self.value_slot]
        present = fresh & (self.is_days | ~np.isnan(raw))
        value = np.where(self.is_days, np.floor(age / DAY_SECONDS), np.where(raw == self.unknown_mark, math.nan, raw))
        values[:, self.last_at] = np.where(present, value, self.last_missing)
        known[:, self.last_at] = present
        newest_us = slots[:, self.view_stamps].max(axis=2)
        ages = np.where(newest_us > 0, np.maximum(now - newest_us / 1_000_000, 0.0), math.nan)
        found: np.ndarray = np.any(slots[:, self.all_stamps] > 0, axis=1)
        return values, known, ages, found


def _columns(rows: Sequence[tuple[object, ...]], n: int) -> list[list[int]]:
    """The first ``n`` columns of ``rows`` as lists of ints (empty lists when there are no rows)."""
    return [[int(r[c]) for r in rows] for c in range(n)]  # type: ignore[call-overload]
