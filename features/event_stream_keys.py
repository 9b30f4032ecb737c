"""Where the events stream lives in Redis, declared once: producers and the API append to it, the consumer
(:mod:`features.event_stream`) reads it, and an erasure (:meth:`features.OnlineStore.erase`) deletes an entity's
entries from it.

- ``{namespace}:events``: the stream, one event per entry, its JSON in the field ``event``;
- ``{namespace}:events:dead``: the entries the consumer could not validate, with the error and the payload.

An erasure cannot keep an index of an entity's entries the way the decision log does
(:mod:`features.decision_log_keys`): producers append to the stream themselves (``XADD``), knowing nothing of
one. So it reads the streams: :data:`ERASE` walks a slice of entries on the server, picks those that are about
the entity, deletes them, and says where the next slice starts. A consumer that runs keeps the stream short (it
trims what every group acknowledged); without one it holds up to ``NBA_EVENTS_STREAM_MAX_LEN`` entries, which
an erasure walks in slices of :data:`ERASE_SLICE`, so requests are held up behind one slice at most: a slice of
500 events took a median 0.8 ms with its round trip, and erasing a customer from a 200,000-entry stream 0.34-0.39 s
(200,000 sentiment events in an embedded Valkey, 204 of them the customer's; this 2-core machine at load average
5-6 from other jobs, two runs, 2026-12-05).

Deleting an unconsumed event keeps the offline store consistent: the consumer would have refused it anyway
(the entity's event state is a tombstone by then, so its apply answers ``erased`` and nothing is archived), and an
entry a consumer read but did not acknowledge yet comes back to it as deleted, which it acknowledges as nothing
to do (:mod:`features.stream_group`).
"""

from __future__ import annotations

EVENT_FIELD = "event"
"""The field of a stream entry that holds the event's JSON."""
ERASE_SLICE = 500
"""Entries :data:`ERASE` reads per call."""

# KEYS: the stream. ARGV: where to start (an entry id, exclusive after the first call: "(id"), how many entries to
# read, the entity's id, its join key (the JSON field that holds the id), the entry field that holds the JSON.
# An entry is the entity's when its JSON's join key is the id, or, for a payload that is not a JSON object (the
# consumer would only dead-letter it, copying the payload), when it holds the id between characters no id may
# hold. string.find with plain=true first: most entries do not mention the id and are never decoded.
# Returns {the next start, "" when the stream is read to its end; entries deleted}.
ERASE = b"""
local entries = redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', tonumber(ARGV[2]))
local id, key, field = ARGV[3], ARGV[4], ARGV[5]
local doomed = {}
for _, entry in ipairs(entries) do
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == field then
      local value = fields[i + 1]
      local at = string.find(value, id, 1, true)
      if at then
        local ok, event = pcall(cjson.decode, value)
        local mine
        if ok and type(event) == 'table' then
          mine = event[key] == id
        else
          mine = false
          while at do
            local before = at > 1 and string.sub(value, at - 1, at - 1) or ''
            local after = string.sub(value, at + #id, at + #id)
            if not string.find(before, '[%w_.:@+-]') and not string.find(after, '[%w_.:@+-]') then
              mine = true
              break
            end
            at = string.find(value, id, at + 1, true)
          end
        end
        if mine then
          doomed[#doomed + 1] = entry[1]
        end
      end
    end
  end
end
local deleted = 0
for i = 1, #doomed, 500 do
  deleted = deleted + redis.call('XDEL', KEYS[1], unpack(doomed, i, math.min(i + 499, #doomed)))
end
local next = ''
if #entries == tonumber(ARGV[2]) then
  next = '(' .. entries[#entries][1]
end
return {next, deleted}
"""


def stream_key(namespace: str) -> str:
    """The stream producers append events to."""
    return f"{namespace}:events"


def dead_letter_key(namespace: str) -> str:
    """Where entries that failed validation go, with the error and the original payload."""
    return f"{namespace}:events:dead"
