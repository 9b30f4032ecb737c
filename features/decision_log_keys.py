"""Where the service's decision log lives in Redis, declared once: the service appends to it
(``service/decision_log.py``), the shadow worker reads it, and an erasure (:meth:`features.OnlineStore.erase`)
deletes a customer's entries from it.

- ``{namespace}:{decision-log}:recommend`` and ``...:assign``: the streams, one entry per decision.
- ``{namespace}:{decision-log}:of:<kind>:<customer id>``: a set, the ids of the stream entries of one customer's
  decisions, which is how an erasure finds them without reading the stream (an assign entry with 100 candidates is
  about 4.5 KB: a scan of a full stream would read hundreds of megabytes). The appending script adds to it and
  renews its expiry, at the log's retention, so it lives as long as the newest entry it lists can (the same script
  trims the stream to that retention); an id whose entry the stream's cap trimmed first is harmless, ``XDEL`` skips
  it.
- ``{namespace}:{decision-log}:agent-rows:<hour>``: a hash, the agents' feature rows the assign entries of that hour
  (hours since the epoch) refer to, each once under its content's id, and under the empty field the id of the entry
  that made the hash (its epoch: a hash lost and made again has another). It expires a day after the log's
  retention from its first row, so it outlives every entry that can refer to it; the stream's cap may trim those
  entries sooner, and the rows of the hour then wait for their expiry.

Every key carries the hash tag ``{decision-log}``: on a cluster the streams, the sets and the shadow worker's
results share one slot, so the scripts that touch a stream and a set together are legal there.
"""

from __future__ import annotations

from typing import Literal

Kind = Literal["recommend", "assign"]
KINDS: tuple[Kind, ...] = ("recommend", "assign")

# KEYS: the stream, the customer's set of entry ids. Deletes the listed entries (in slices: Lua's unpack() cannot
# spread more than a few thousand values), then the set; returns how many entries the stream held.
ERASE = b"""
local ids = redis.call('SMEMBERS', KEYS[2])
local deleted = 0
for i = 1, #ids, 500 do
  deleted = deleted + redis.call('XDEL', KEYS[1], unpack(ids, i, math.min(i + 499, #ids)))
end
redis.call('DEL', KEYS[2])
return deleted
"""


def stream_key(namespace: str, kind: Kind) -> str:
    """The stream of ``kind``'s decisions."""
    return f"{namespace}:{{decision-log}}:{kind}"


def agent_rows_key(namespace: str, hour: int) -> str:
    """The hash of the agents' feature rows the assign entries of ``hour`` (hours since the epoch) refer to."""
    return f"{namespace}:{{decision-log}}:agent-rows:{hour}"


def customer_entries_key(namespace: str, kind: Kind, customer_id: str) -> str:
    """The set of the ids of ``customer_id``'s entries in ``kind``'s stream (see the module)."""
    return f"{namespace}:{{decision-log}}:of:{kind}:{customer_id}"
