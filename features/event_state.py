"""Event features online: an entity's event state as one binary string, and how it reads back.

Layout (little-endian float64s after an 8-byte tag, like :mod:`features.packed`)::

    tag | trim day | id width || ring header 1 | ... | last group 1 | ... || id 1 | id 2 | ... || day record ...

- The **tag** is a hash of this layout (entity, series, windows, groups, fields and their encodings, the way
  rings are stored). A reader or a script built from another contract finds a different tag and treats the
  value as absent (the script starts it over), so a contract change reads as a cold start, never as one
  feature's number read as another's.
- A **ring** gathers the series of one event type that need the same number of days ``W`` (the longest window
  any feature reads from them; a series is a ``count``, the ``sum`` of a field or the count of the events
  carrying it, each possibly narrowed by a ``where``). Its header is the newest day it holds (UTC days since
  1970); it holds the days ``newest - W < d <= newest``. An event of a day newer than the header moves it on;
  one of a day at or before ``newest - W`` can change no window and is dropped; any other adds to its day. So
  windows slide with no sweeping job, and a late event still lands in its own day.
- A **day record** (16 bytes: key ``day * 256 + series``, amount) holds one series' total of one day that had
  events of it. Only those days are stored: a customer with 20 events in the horizon keeps a handful of records
  where holding every ring whole (``W`` slots per series) took 6.7 KB, 87% zeros, and materializing 100,000
  customers meant writing 670 MB. A record the ring has moved past is skipped by reads and dropped by the script
  on the entity's first event of a later day, with the seen ids (see below).
- A **last group** is one (event type, ``where``) that a ``last`` or ``days_since`` reads, plus one unfiltered
  group per event type read at all (its stamp says how old the view is): the newest event's time in
  microseconds as float64 (exact below 2**53, about year 2255; 0 = never), then one float64 per field read,
  already encoded as the model reads it (category index, 0/1, number), NaN when the newest event lacks it.
  A category value the contract does not know is stored as -1: it reads as unknown but, unlike a missing
  field, is not replaced by the default, as the offline join has it.
- The **trim day** (a float64 only the script uses: the day it last trimmed the entity's seen ids and day
  records) and the **id width** ``w`` (a float64, a multiple of 8) sit after the tag. After the fixed slots come
  the **ids**: the event id of each group with fields, NUL-padded to ``w`` bytes. Only the script reads them, to
  break a tie between two events of the same microsecond the way the offline store orders (``occurred_at,
  event_id``). ``w`` is the value's own: materialization sizes it to the longest id it writes, and the script
  widens a value (rewriting it once) when a longer id arrives. Every id padded to the 64 bytes the API allows
  took 640 of a customer's 1,025 bytes, most of what materialization sent and Redis held, for ids of 8 to 16
  bytes. The tag, the trim day, the width, the fixed slots and the ids sit at offsets the script knows once it
  has read ``w``, so it changes them in place; the records follow at ``ids + groups * w``.

A read is one ``GET``; numpy turns N values into every event feature at once. The records are first spread into
the days of whole rings (the slot ``day mod W`` of their ring), so from there the window sums are the ones the
offline store computes, added oldest day first by precomputed index arrays and masks. What this gives up: the
bytes are not readable with ``redis-cli`` (``nba features`` and ``GET /v1/customers/{id}/features`` are). An
event stamped on a day after the day of a read (a clock ahead by minutes near midnight) moves its rings on
early: until the reader's day catches up, the oldest day of the longest windows reads as empty.

Applying a batch of events is one Lua script call (:data:`APPLY_EVENTS`): a per-entity sorted set of seen ids
makes a retried event count once, then Lua's ``struct`` updates the ring headers and groups the event reaches
in its event type's segment of the fixed part (``GETRANGE``/``SETRANGE``; one segment per event type is why the
layout groups headers and last groups by event type) and adds to its day records (found by a plain substring
search for their key, or appended). The arithmetic mirrors :mod:`features.offline_store`'s SQL; a parity test
holds the two together.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

import numpy as np

from features.registry import DAY_SECONDS, EntitySchema, Feature

TAG_BYTES = 8
ID_BYTES = 64
"""The longest event id the state can hold; the API's id pattern allows at most 64 ASCII characters."""
FIXED_AT = TAG_BYTES + 16
"""Byte offset of the fixed slots: after the tag, the trim day and the id width."""
ERASED = b"erased!\x00"
"""The whole event-state value of an erased entity: a tombstone that makes the apply script refuse its later
events (a late or replayed one must not bring the entity back) and that every read takes for absent state."""
UNKNOWN_CATEGORY = -1.0
"""A `last` category value the contract does not list: unknown, but present (no default stands in)."""
_F8 = np.dtype("<f8")
_SERIES = 256
"""A day record's key is ``day * 256 + series index``: exact in a float64, and one 8-byte string per (series, day)
that the script finds with a plain substring search."""
_RECORD = 16
"""Bytes of a day record: its key and its amount, float64 each."""
_RECORDS = "day-records-1"
"""Names the way rings are stored (in the tag's hash): values of the layout before it, every ring's days held
whole, read as absent."""
_IDS = "ids-sized-per-value"
"""Names the way ids are stored (in the tag's hash): values whose ids were padded to 64 bytes read as absent."""

APPLY_EVENTS = """
-- Applies a batch of events, each at most once. KEYS: per entity, its state string then its seen-id sorted set.
-- ARGV[1]: the horizon (epoch seconds); ARGV[2]: the layout's tag; ARGV[3]: the bytes before the ids
-- (EventLayout.ids_at); ARGV[4]: how many ids a value holds (EventLayout.id_slots); ARGV[5]: as many NUL bytes as
-- ARGV[3], and at least 64 (Lua 5.1's string.rep builds a string a byte at a time); ARGV[6]: the erased
-- entity's tombstone (ERASED), whose events are refused and leave nothing behind; ARGV[7]: per series, its ring
-- header's byte offset and its days (float64s, EventLayout.compaction); then per event: key index (1-based
-- pair), event_id, occurred_at (s), and its changes as float64s (see EventLayout.changes): day, the byte offset
-- and length of the event type's segment, rings, groups, then per ring (header offset in the segment, W, k, then
-- k day records: key, amount) and per group (stamp offset in the segment, the index of its id or -1, m, stamp,
-- m values).
-- Returns one integer per event: 1 applied, 0 seen before, 2 refused (the entity was erased).
--
-- An event reads and writes only the bytes it changes: its event type's segment of the fixed slots (GETRANGE,
-- SETRANGE), the amount of each day record it adds to or the record it appends (the records are read with one
-- GETRANGE when it adds to a ring, found by a plain substring search), and the ids of the groups it becomes the
-- newest of (SETRANGE).
-- Holding each entity's whole value in the script instead (one GET and SET per entity per call, the value rebuilt
-- in Lua) cost twice the server CPU per event when rings were held whole (bench: 48 against 22 us), more than
-- the GETRANGE/SETRANGE calls it saved; most likely Lua 5.1 interning every string it makes.
local horizon, tag, ids_at, slots, zeros = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local tombstone = ARGV[6]
local horizon_day = math.floor(tonumber(horizon) / 86400)
local trim_at, width_at = 8, 16
local series = {}
for j = 0, #ARGV[7] / 16 - 1 do
  local head, w = struct.unpack('<dd', ARGV[7], 16 * j + 1)
  series[j] = {head, w}
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
-- The position in `s` of the day record whose key is the 8 bytes `k`, the records starting at `first` (a plain
-- search, kept to record boundaries).
local function find(s, k, first)
  local from = first
  while true do
    local at = string.find(s, k, from, true)
    if not at or (at - first) % 16 == 0 then return at end
    from = at + 1
  end
end
-- Drops the day records no window can reach any more (their ring has moved on by its days); a read skips them
-- meanwhile, so this only bounds the value's size. Once a day per entity, with the trim of its seen ids. `size`:
-- the bytes before the records.
local function compact(key, size)
  local records = redis.call('GETRANGE', key, size, -1)
  if #records < 16 then return end
  local fixed = redis.call('GETRANGE', key, 0, size - 1)
  local kept, dropped = {}, false
  for at = 1, #records - 15, 16 do
    local k = struct.unpack('<d', records, at)
    local s = k % 256
    local ring = series[s]
    if ring and (k - s) / 256 > struct.unpack('<d', fixed, ring[1] + 1) - ring[2] then
      kept[#kept + 1] = string.sub(records, at, at + 15)
    else
      dropped = true
    end
  end
  if dropped then redis.call('SET', key, fixed .. table.concat(kept)) end
end
-- Pads every id to `w` bytes instead of `held` (an id longer than `held` arrived): the value is rewritten once,
-- its records moved along.
local function widen(key, held, w)
  local value = redis.call('GET', key)
  local parts = {string.sub(value, 1, width_at), struct.pack('<d', w), string.sub(value, width_at + 9, ids_at)}
  for k = 0, slots - 1 do
    local at = ids_at + k * held
    parts[#parts + 1] = string.sub(value, at + 1, at + held) .. string.sub(zeros, 1, w - held)
  end
  parts[#parts + 1] = string.sub(value, ids_at + slots * held + 1)
  redis.call('SET', key, table.concat(parts))
end
-- `id` comes padded to `w`, the value's id width; `size`: the bytes before its records.
local function apply(key, id, blob, w, size)
  local day, start, len, rings, groups, pos = struct.unpack('<ddddd', blob)
  -- An event that adds to a ring reads its segment and the records in one GETRANGE (the later segments in between
  -- are a few hundred bytes), then writes back only what it changes.
  -- The records are searched where they sit in that range, not copied out of it.
  local seg, tail, appended
  local first = size - start + 1
  if rings > 0 then
    tail = redis.call('GETRANGE', key, start, -1)
    seg = string.sub(tail, 1, len)
  else
    seg = redis.call('GETRANGE', key, start, start + len - 1)
  end
  for _ = 1, rings do
    local off, w, k, p = struct.unpack('<ddd', blob, pos)
    local newest = struct.unpack('<d', seg, off + 1)
    -- A day at or before newest - W can change no window: dropped. A newer day moves the ring on; the records
    -- of the days it moves past stay until compacted, and reads skip them.
    if day > newest - w then
      if day > newest then seg = put(seg, off, struct.pack('<d', day)) end
      -- Each record is changed in place (its amount) or appended: the records are read, never rebuilt in Lua.
      for c = 0, k - 1 do
        local at = p + 16 * c
        local found = find(tail, string.sub(blob, at, at + 7), first)
        if found then
          local total = struct.unpack('<d', tail, found + 8) + struct.unpack('<d', blob, at + 8)
          redis.call('SETRANGE', key, start + found + 7, struct.pack('<d', total))
        else
          appended = (appended or '') .. string.sub(blob, at, at + 15)
        end
      end
    end
    pos = p + 16 * k
  end
  if appended then redis.call('SETRANGE', key, start + #tail, appended) end
  local ids = {}
  for _ = 1, groups do
    local off, k, m, p = struct.unpack('<ddd', blob, pos)
    local us = struct.unpack('<d', blob, p)
    local held = struct.unpack('<d', seg, off + 1)
    local newer = us > held
    local id_at = ids_at + k * w
    if us == held and k >= 0 then
      newer = after(id, redis.call('GETRANGE', key, id_at, id_at + w - 1))
    end
    if newer then
      seg = put(seg, off, string.sub(blob, p, p + 8 * (m + 1) - 1))
      if k >= 0 then ids[#ids + 1] = id_at end
    end
    pos = p + 8 * (m + 1)
  end
  redis.call('SETRANGE', key, start, seg)
  for _, at in ipairs(ids) do redis.call('SETRANGE', key, at, id) end
end
local heads = {}
local ready = {}
local trimmed = {}
local widths = {}
local out = {}
for i = 8, #ARGV, 4 do
  local n = tonumber(ARGV[i]) * 2
  local key, seen, id, blob = KEYS[n - 1], KEYS[n], ARGV[i + 1], ARGV[i + 3]
  local head = heads[key]
  if not head then
    head = redis.call('GETRANGE', key, 0, 7)
    heads[key] = head
  end
  local fresh = head ~= tombstone and redis.call('ZADD', seen, 'NX', ARGV[i + 2], id) == 1
  if fresh and #blob > 40 then
    if not ready[key] then
      -- The tag names the layout, and so the size of the fixed part: a value of another layout (or none) starts
      -- over empty, holding ids of no bytes.
      local header = redis.call('GETRANGE', key, trim_at, width_at + 7)
      if #header ~= 16 or head ~= tag then
        redis.call('SET', key, tag .. string.sub(zeros, 9, ids_at))
        header = string.sub(zeros, 1, 16)
      end
      local trim_day, w = struct.unpack('<dd', header)
      widths[key] = w
      -- The seen ids older than the horizon and the day records out of reach go once a day per entity; the day
      -- of the last trim is kept after the tag.
      if trim_day < horizon_day then
        redis.call('ZREMRANGEBYSCORE', seen, '-inf', '(' .. horizon)
        redis.call('SETRANGE', key, trim_at, struct.pack('<d', horizon_day))
        compact(key, ids_at + slots * w)
      end
      trimmed[seen] = true
      ready[key] = true
    end
    local w = widths[key]
    if slots > 0 and #id > w then
      local wider = 8 * math.ceil(#id / 8)
      widen(key, w, wider)
      w = wider
      widths[key] = w
    end
    apply(key, id .. string.sub(zeros, 1, w - #id), blob, w, ids_at + slots * w)
  elseif fresh and not trimmed[seen] then
    -- An event no feature reads (an identity event) creates no state; its entity's seen ids are trimmed here.
    redis.call('ZREMRANGEBYSCORE', seen, '-inf', '(' .. horizon)
    trimmed[seen] = true
  end
  out[#out + 1] = (head == tombstone and 2) or (fresh and 1) or 0
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


def stamp_us(occurred_at: float) -> int:
    """An event's moment in whole microseconds, the precision the offline store keeps."""
    return round(occurred_at * 1_000_000)


def check_event_id(event_id: str) -> None:
    """Refuse an id the state cannot hold: longer than :data:`ID_BYTES`, or with a NUL (ids are NUL-padded, and NUL
    sorts first, so padded ids compare as the ids do)."""
    raw = event_id.encode()
    if len(raw) > ID_BYTES or b"\0" in raw:
        raise ValueError(f"event_id {event_id!r}: at most {ID_BYTES} bytes and no NUL")


def id_width(value: bytes) -> int:
    """The width its ids are padded to in ``value`` (a value of some layout, at least :data:`FIXED_AT` long)."""
    return int(struct.unpack_from("<d", value, TAG_BYTES + 8)[0])


def width_for(longest: int) -> int:
    """The id width that holds ids of ``longest`` bytes: a multiple of 8, so the day records stay 8-aligned."""
    return -(-longest // 8) * 8


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
    """The series of one event type kept over the same number of days: one header in the fixed part (the newest
    day held), and day records of each series for the days of the last ``days`` that had events."""

    event: str
    days: int
    series: tuple[Series, ...]
    slot: int
    """The header's slot in the fixed part."""
    first: int
    """The index of its first series among the layout's (a day record names its series by that index)."""


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
    id_index: int
    """Which of the value's ids is its newest event's, -1 when no field is kept (a tie cannot change a stamp)."""

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
        """Per event type: the byte offset and length of the part of the fixed slots its events change."""
        slot = ids = 0
        ordered: list[Series] = []
        for event in events:
            first = slot
            for (ring_event, days), members in by_ring.items():
                if ring_event == event:
                    rings.append(Ring(event, days, tuple(members), slot, len(ordered)))
                    ordered += members
                    slot += 1
            for (group_event, where), values in groups.items():
                if group_event == event:
                    kept = tuple(values.values())
                    lasts.append(LastGroup(event, where, kept, slot, ids if kept else -1))
                    slot += 1 + len(kept)
                    ids += 1 if kept else 0
            self.segments[event] = (FIXED_AT + 8 * first, 8 * (slot - first))
        self.rings = tuple(rings)
        self.series = tuple(ordered)
        """In the order of their indices in day records: ring by ring."""
        if len(self.series) > _SERIES:
            raise ValueError(f"{schema.name}: {len(self.series)} windowed series; day records name at most {_SERIES}")
        self.width = slot
        """Fixed slots: ring headers and last groups."""
        self.ids_at = FIXED_AT + 8 * slot
        """Bytes before the ids (the value of an entity whose ids have no bytes yet)."""
        self.id_slots = ids
        """How many ids a value holds: one per group with fields."""
        self.groups = tuple(lasts)
        shape = [
            schema.name,
            _RECORDS,
            [(r.event, r.days, [(s.name, s.days) for s in r.series]) for r in self.rings],
            [(g.event, g.where, [(v.field, *_encoding(v.feature)) for v in g.values]) for g in self.groups],
            _IDS,
        ]
        self.tag = hashlib.sha256(json.dumps(shape).encode()).digest()[:TAG_BYTES]
        self._tag_word = np.frombuffer(self.tag, dtype=np.uint64)[0]
        self._absent = bytes(self.ids_at)
        self.compaction = struct.pack(
            f"<{2 * len(self.series)}d", *(v for r in rings for _ in r.series for v in (self.offset(r.slot), r.days))
        )
        """Per series, its ring header's byte offset and its days, as float64s: how the script tells which day
        records no window can reach any more."""
        self.defaults = np.array([f.encode(None) for f in self.features], dtype=_F8)
        """Each event feature's encoded default (NaN where it has none): what it reads as when not read."""
        self._writers = {e: _Writer(e, self) for e in events}
        self.view_events = {
            v.name: tuple(sorted({f.aggregation.event for f in v.features if f.aggregation}))
            for v in schema.views
            if v.source == "events"
        }
        self.plan = ReadPlan(self, schema)
        """What a read gathers and computes, resolved once (:mod:`features.fast_decode`'s C decode takes it too)."""

    def offset(self, slot: int) -> int:
        """The byte offset in the value of fixed slot ``slot`` (a ring header, a group's stamp or value)."""
        return FIXED_AT + 8 * slot

    def records_at(self, value: bytes) -> int:
        """Bytes before the day records of ``value`` (a value of this layout): after its ids, whose width it holds."""
        return self.ids_at + self.id_slots * id_width(value)

    @property
    def events(self) -> tuple[str, ...]:
        """Event types this entity's features read."""
        return tuple(self.segments)

    @property
    def columns(self) -> tuple[str, ...]:
        """The event fields this state reads: summed or counted, narrowed on (``where``), or kept as a `last`."""
        return tuple(dict.fromkeys(c for event in self.events for c in self.columns_of(event)))

    def columns_of(self, event: str) -> tuple[str, ...]:
        """The fields of ``event`` this state reads."""
        series = [s for s in self.series if s.event == event]
        groups = [g for g in self.groups if g.event == event]
        named = [s.field for s in series if s.field is not None] + [k for s in series for k, _ in s.where]
        named += [k for g in groups for k, _ in g.where] + [v.field for g in groups for v in g.values]
        return tuple(dict.fromkeys(named))

    def group(self, event: str, where: tuple[tuple[str, bool | str], ...] = ()) -> LastGroup:
        """The last group of ``event`` narrowed by ``where`` (the unfiltered one by default)."""
        return next(g for g in self.groups if g.event == event and g.where == where)

    # ---- writing -----------------------------------------------------------------------------------

    def changes(self, event: Event) -> bytes:
        """What ``event`` does to the state, as :data:`APPLY_EVENTS` reads it (float64s, see its header)."""
        check_event_id(event.event_id)  # refused here, before the batch is sent, if the state cannot hold it
        writer = self._writers.get(event.type)
        if writer is None:
            return struct.pack("<5d", event.occurred_at // DAY_SECONDS, 0, 0, 0, 0)
        return writer.changes(event)

    def empty_rows(self, n: int) -> np.ndarray:
        """The fixed slots of ``n`` entities with no events (every ring empty, every group never seen)."""
        return np.zeros((n, self.width), dtype=_F8)

    def record_key(self, day: int | np.ndarray, series: int) -> float | np.ndarray:
        """The key of the day record of series number ``series`` (its index in :attr:`series`) on ``day``."""
        return day * _SERIES + series

    def values(self, rows: np.ndarray, ids: np.ndarray, entity: np.ndarray, records: np.ndarray) -> list[bytes]:
        """Whole state values from the fixed slots (``n x width``), the ids (``n x`` :attr:`id_slots` ``x w``,
        uint8, NUL-padded; ``w`` a multiple of 8) and the day records (``entity``: each one's row, ascending;
        ``records``: its key and amount)."""
        n, w = rows.shape[0], ids.shape[2]
        step = self.ids_at + self.id_slots * w
        body = np.empty((n, step), dtype=np.uint8)
        body[:, :TAG_BYTES] = np.frombuffer(self.tag, dtype=np.uint8)
        body[:, TAG_BYTES:FIXED_AT] = np.frombuffer(struct.pack("<2d", 0, w), dtype=np.uint8)  # never trimmed yet
        body[:, FIXED_AT : self.ids_at] = rows.astype(_F8, copy=False).view(np.uint8).reshape(n, -1)
        body[:, self.ids_at :] = ids.reshape(n, -1)
        # Each value is one join of its row of ``body`` and its records, both views: one copy of the bytes.
        fixed = body.reshape(-1).data
        tails = np.ascontiguousarray(records, dtype=_F8).reshape(-1).view(np.uint8).data
        ends = np.cumsum(np.bincount(entity, minlength=n)) * _RECORD
        starts = np.concatenate(([0], ends[:-1]))
        join = b"".join
        return [
            join((fixed[at : at + step], tails[start:end]))
            for at, start, end in zip(range(0, n * step, step), starts.tolist(), ends.tolist(), strict=True)
        ]

    # ---- reading -----------------------------------------------------------------------------------

    def unpack(self, blobs: Sequence[bytes | None]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The fixed slots (rows x width; an empty state where absent or of another layout), which rows were
        here, and their day records: each one's row, and its key and amount (``records x 2``)."""
        n, at, tag = len(blobs), self.ids_at, self.tag
        present = [b is not None and len(b) >= at and b.startswith(tag) for b in blobs]
        stored = cast(list[bytes], [b for b, ok in zip(blobs, present, strict=True) if ok])
        if len(stored) < n:
            kept = iter(stored)
            stored_or_empty = [next(kept) if ok else self._absent for ok in present]
        else:
            stored_or_empty = stored
        fixed = b"".join([b[FIXED_AT:at] for b in stored_or_empty])
        slots = np.frombuffer(fixed, dtype=_F8).reshape(n, self.width)
        starts = [at + self.id_slots * id_width(b) for b in stored]
        tails = [b[start : len(b) - (len(b) - start) % _RECORD] for b, start in zip(stored, starts, strict=True)]
        records = np.frombuffer(b"".join(tails), dtype=_F8).reshape(-1, 2)
        if n == 1 or not len(records):
            owners = np.zeros(len(records), dtype=np.intp)
        else:
            rows = np.flatnonzero(present) if len(stored) < n else np.arange(n)
            owners = np.repeat(rows, [len(t) // _RECORD for t in tails])
        return slots, np.array(present, dtype=bool), owners, records

    def held(self, tags: Sequence[bytes | None]) -> np.ndarray:
        """Which of these values (their first bytes at least) are event state of this layout: bool per value."""
        return np.array([t is not None and t[:TAG_BYTES] == self.tag for t in tags], dtype=bool)

    def decode(
        self, blobs: Sequence[bytes | None], now: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Features of N entities from their state values, as of ``now``.

        Returns values and known (N x event features, registry order), each event view's age in seconds (N x
        event views, NaN where never observed) and whether the entity has any event state at all.
        """
        slots, _, owners, records = self.unpack(blobs)
        return self.plan.run(slots, owners, records, now)


class _Writer:
    """:meth:`EventLayout.changes` for one event type, its offsets resolved once: it runs once per event."""

    def __init__(self, event: str, layout: EventLayout) -> None:
        start, _length = self.segment = layout.segments[event]
        self.rings = [
            (layout.offset(r.slot) - start, r.days, tuple(enumerate(r.series, start=r.first)))
            for r in layout.rings
            if r.event == event
        ]
        self.groups = [
            (g, layout.offset(g.slot) - start, g.id_index, len(g.values)) for g in layout.groups if g.event == event
        ]

    def changes(self, event: Event) -> bytes:
        day = event.occurred_at // DAY_SECONDS
        parts: list[float] = [day, *self.segment, 0, 0]
        for offset, days, series in self.rings:
            records = [(day * _SERIES + i, a + 0.0) for i, s in series if (a := s.amount(event)) is not None]
            if records:
                parts[3] += 1
                parts += [offset, days, len(records), *(v for record in records for v in record)]
        us = float(stamp_us(event.occurred_at))
        for group, offset, id_index, m in self.groups:
            if group.matches(event):
                parts[4] += 1
                parts += [offset, id_index, m, us, *(v.encode(event.fields.get(v.field)) for v in group.values)]
        return struct.pack(f"<{len(parts)}d", *parts)


class ReadPlan:
    """What :meth:`EventLayout.decode` gathers and computes, resolved from the contract once, so a read is one
    gather of the slots it needs, one scatter of the day records and a few whole-matrix operations: a read of
    one entity costs about as many numpy calls as a read of a hundred.

    Windowed totals: one row per (series, window), ``w_max`` days oldest first (days before a shorter window
    are never held). A day record of day ``today - b`` lands in each row of its series whose window reaches it
    (``0 <= b < window``) if its ring still holds it (``newest - W < day <= newest``); every other day adds 0.0,
    as the slot of a day with no events did when rings were stored whole. The days are added one after the
    other, oldest first, the order the offline store's per-day totals were added in, so totals stay bit-equal:
    a reduction along an axis that is not the fastest in memory adds element by element (numpy sums pairwise
    only along the fastest axis), which is why the rows are the last axis and there are always at least two.
    """

    def __init__(self, layout: EventLayout, schema: EntitySchema) -> None:
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
        if len(keys) == 1:
            keys.append((keys[0][0], 0))  # a second row, never held: see the class docstring
        self.n = len(layout.features)
        self.rows = len(keys) if rows else 0
        self.w_max = max((w for _, w in keys), default=0)
        # Per series (by index), the rows it feeds and their windows, padded with a row no day reaches (window 0).
        feeds = [[(r, w) for r, (name, w) in enumerate(keys) if name == s.name] or [(0, 0)] for s in layout.series]
        widest_feed = max((len(f) for f in feeds), default=1)
        padded = [f + [(0, 0)] * (widest_feed - len(f)) for f in feeds]
        self.feed_rows = np.array([[r for r, _ in f] for f in padded], dtype=np.intp).reshape(-1, widest_feed)
        self.feed_windows = np.array([[w for _, w in f] for f in padded], dtype=np.int64).reshape(-1, widest_feed)
        by_ring = {s.name: r for r in layout.rings for s in r.series}
        self.series_head = np.array([by_ring[s.name].slot for s in layout.series], dtype=np.intp)
        self.series_days = np.array([by_ring[s.name].days for s in layout.series], dtype=np.uint64)
        # Per series and day back (w_max: none a row reads), where a day record lands in a read's plane of days
        # (1 + (w_max - 1 - back) * rows + row, oldest first), once per row it feeds; 0, the spare slot, for a row
        # whose window does not reach that day.
        back = np.arange(self.w_max + 1)[None, :, None]
        reaches = back < self.feed_windows[:, None, :]
        self.targets = np.where(
            reaches, 1 + (self.w_max - 1 - back) * self.rows + self.feed_rows[:, None, :], 0
        ).astype(np.intp)
        m = len(means)
        mean_rows = [x[1] for x in means] + [x[2] for x in means]
        self.mean_missing = np.array([x[3] for x in means], dtype=np.float64)
        self.last_ttl = np.array([x[3] for x in lasts], dtype=np.float64)
        self.last_missing = np.array([x[4] for x in lasts], dtype=np.float64)
        is_days = np.array([x[2] < 0 for x in lasts], dtype=bool)
        self.is_days = is_days
        category = np.array([x[5] for x in lasts], dtype=bool)
        self.unknown_mark = np.where(category & ~is_days, UNKNOWN_CATEGORY, math.inf)
        """Per `last` feature the stored value that reads as NaN: the unknown-category mark, or nothing."""
        # Each event view's stamps (its event types' unfiltered groups), padded by repeating its first: a max.
        # Every unfiltered group is some event view's, so these stamps also say whether the entity has any state.
        stamps = [[layout.group(e).slot for e in events] for events in layout.view_events.values()]
        widest = max((len(v) for v in stamps), default=0)
        self.views = len(stamps)
        self.widest = widest
        fixed = [
            *(x[1] for x in lasts),
            *(x[2] if x[2] >= 0 else x[1] for x in lasts),
            *(s for v in stamps for s in v + v[:1] * (widest - len(v))),
        ]
        self.fixed = np.array(fixed, dtype=np.intp)
        """Slots read whatever the day: per `last` its stamp and value, then the view stamps."""
        self.mean_rows = np.array(mean_rows, dtype=np.intp)
        """The sum rows then the count rows of the means."""
        self.m = m
        self.lasts = len(lasts)
        r, n_last = self.rows, len(lasts)
        # Where each feature's value and known flag come from in the columns the run builds side by side:
        # totals (rows), means (m), lasts, and one column that is always known.
        where_value = [0] * self.n
        where_known = [0] * self.n
        for i, t in direct:
            where_value[i], where_known[i] = t, m + n_last
        for j, mean in enumerate(means):
            where_value[mean[0]], where_known[mean[0]] = r + j, j
        for j, last in enumerate(lasts):
            where_value[last[0]], where_known[last[0]] = r + m + j, m + j
        self.value_from = np.array(where_value, dtype=np.intp)
        self.known_from = np.array(where_known, dtype=np.intp)

    def run(
        self, slots: np.ndarray, owners: np.ndarray, records: np.ndarray, now: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        n, rows, k = slots.shape[0], self.rows, self.lasts
        picked = slots[:, self.fixed]
        at = 0
        # The days of every row, oldest first, after one spare slot that takes what no row reads.
        plane = np.zeros((n, 1 + self.w_max * rows), dtype=_F8)
        if len(records):
            day, series = np.divmod(records[:, 0].astype(np.int64), _SERIES)
            lag = slots[owners, self.series_head[series]].astype(np.int64) - day
            back = math.floor(now / DAY_SECONDS) - day
            # Held by its ring (0 <= newest - day < W) and not after today: unsigned, each is one comparison.
            read = (lag.view(np.uint64) < self.series_days[series]) & (back.view(np.uint64) < self.w_max)
            targets = self.targets[series, np.where(read, back, self.w_max)]
            plane[owners[:, None], targets] = records[:, 1:]
        held_days = plane[:, 1:].reshape(n, self.w_max, rows)
        totals = np.add.reduce(held_days, axis=1)
        mean_rows = totals[:, self.mean_rows]
        sums, counts = mean_rows[:, : self.m], mean_rows[:, self.m :]
        mean_known = counts > 0
        means = np.where(mean_known, sums / np.maximum(counts, 1.0), self.mean_missing)
        stamps = picked[:, at : at + k] / 1_000_000
        age = now - stamps
        value = np.where(self.is_days, np.floor(age / DAY_SECONDS), picked[:, at + k : at + 2 * k])
        present = (stamps > 0) & (age <= self.last_ttl) & (value == value)
        lasts = np.where(present, np.where(value == self.unknown_mark, math.nan, value), self.last_missing)
        newest_us = picked[:, at + 2 * k :].reshape(n, self.views, self.widest).max(axis=2)
        seen = newest_us > 0
        ages = np.where(seen, np.maximum(now - newest_us / 1_000_000, 0.0), math.nan)
        values = np.concatenate((totals, means, lasts), axis=1)[:, self.value_from]
        known = np.concatenate((mean_known, present, np.ones((n, 1), dtype=bool)), axis=1)[:, self.known_from]
        return values, known, ages, seen.any(axis=1)
