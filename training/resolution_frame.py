"""The resolution model's training frame: (contact, agent) pairs with both entities' features at routing time.

A row is a contact routed to an agent: the contact's intent, channel and language (what the routing engine
sends to ``POST /v1/assign``), the customer's features and the agent's features as they stood when the contact
started (``started_at``), from the offline store's point-in-time join, once per entity. Nothing observed after
the contact started reaches its row: not the contact's own end, survey or sentiment score, not the agent's
results over the month it belongs to (the agent snapshot taken at that month's end comes after it).

The model's input is the contact's category codes, then the customer's model inputs, then the agent's, in
contract order, then the agent's rating, and measured rate and contact count over 90 and over 180 days, for the
contact's intent (the bundle's ``matched`` inputs): :meth:`training.bundle.ModelBundle.pair_rows` lays out the
same columns for the service.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features import OfflineStore, Registry
from training.bundle import Matched, with_matched
from training.errors import DatasetError
from training.train import Split

STARTED = "started_at"
PERIOD = timedelta(days=30)
CONTACT_PREFIX = "contact_"
CONTACT_FIELDS = ("intent", "channel", "language")
"""The contact's own inputs, as the request carries them; columns ``contact_<field>`` in the frame."""
# The agent's inputs held once per skill; "{skill}" is the skill the contact's intent needs.
PER_SKILL = {
    "intent_proficiency": "proficiency_{skill}",
    "intent_resolution_rate_90d": "resolution_rate_{skill}_90d",
    "intent_contacts_90d": "contacts_{skill}_90d",
    "intent_resolution_rate_180d": "resolution_rate_{skill}_180d",
    "intent_contacts_180d": "contacts_{skill}_180d",
}


def contact_categories(registry: Registry) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Each contact field with its categories from the contract: intent and channel as ``contact_started``
    events declare them, language as the customer's ``language`` feature (the languages assign accepts)."""
    started = registry.events["contact_started"].fields
    language = registry.entity("customer").feature("language").categories
    intent, channel = started["intent"].categories, started["channel"].categories
    assert intent is not None
    assert channel is not None
    assert language is not None
    return (("intent", intent), ("channel", channel), ("language", language))


def matched_inputs(registry: Registry) -> Matched:
    """The bundle's ``matched`` inputs: for each of :data:`PER_SKILL`, the agent's column per intent code.

    The intent's skill is the contact center's routing rule (the contract's ``intent_skills``); the bundle
    carries the resolved columns, so the service scores without looking the rule up.
    """
    intents = dict(contact_categories(registry))["intent"]
    return tuple(
        (name, tuple(source.format(skill=registry.intent_skills[intent]) for intent in intents))
        for name, source in PER_SKILL.items()
    )


def _row_names(registry: Registry) -> tuple[str, ...]:
    return (
        *(CONTACT_PREFIX + f for f in CONTACT_FIELDS),
        *registry.entity("customer").model_names,
        *registry.entity("agent").model_names,
    )


def feature_names(registry: Registry) -> tuple[str, ...]:
    """The model's input columns, in order."""
    return (*_row_names(registry), *PER_SKILL)


def categorical_indices(registry: Registry) -> list[int]:
    """Positions of the categorical inputs: the contact's codes, then the customer's and agent's categories."""
    offset = len(CONTACT_FIELDS)
    customer, agent = registry.entity("customer"), registry.entity("agent")
    return [
        *range(offset),
        *(offset + i for i in customer.categorical_indices),
        *(offset + len(customer.model_names) + i for i in agent.categorical_indices),
    ]


def with_customer(offline: OfflineStore, contacts: pa.Table) -> pa.Table:
    """``contacts`` (``customer_id``, ``started_at``, intent, channel, language, ...) with the customer's features
    as of each contact's start; the contact's fields become ``contact_<field>``, beside the customer's own."""
    missing = [c for c in ("customer_id", STARTED, *CONTACT_FIELDS) if c not in contacts.column_names]
    if missing:
        raise DatasetError(f"contacts: missing column(s) {', '.join(missing)}")
    renamed = [CONTACT_PREFIX + c if c in CONTACT_FIELDS else c for c in contacts.column_names]
    table = contacts.rename_columns(renamed)
    table = table.append_column("_pair", pa.array(np.arange(table.num_rows), pa.int64()))
    joined = offline.point_in_time("customer", table, ts_column=STARTED)
    return joined.rename_columns(["customer_feature_ts" if c == "feature_ts" else c for c in joined.column_names])


def with_agent(offline: OfflineStore, rows: pa.Table) -> pa.Table:
    """``rows`` of :func:`with_customer` (with an ``agent_id``) with the agent's features as of each start, in
    the order of ``rows``."""
    if "agent_id" not in rows.column_names:
        raise DatasetError("contacts: missing column(s) agent_id")
    rows = rows.set_column(rows.column_names.index("_pair"), "_pair", pa.array(np.arange(rows.num_rows), pa.int64()))
    joined = offline.point_in_time("agent", rows, ts_column=STARTED)
    joined = joined.rename_columns(["agent_feature_ts" if c == "feature_ts" else c for c in joined.column_names])
    return joined.take(pc.sort_indices(joined.column("_pair")))


def pair_frame(offline: OfflineStore, contacts: pa.Table) -> pa.Table:
    """Each contact with the customer's and the agent who took it's features as of its start, oldest first."""
    frame = with_agent(offline, with_customer(offline, contacts))
    return frame.take(pc.sort_indices(frame, sort_keys=[(STARTED, "ascending"), ("_pair", "ascending")]))


def pair_matrix(registry: Registry, offline: OfflineStore, frame: pa.Table) -> np.ndarray:
    """The model input of a frame's rows, in :func:`feature_names` order (float64, NaN for missing)."""
    codes = [
        pc.index_in(frame.column(CONTACT_PREFIX + name).cast(pa.string()), value_set=pa.array(cats))
        .cast(pa.float64())
        .to_numpy(zero_copy_only=False)
        for name, cats in contact_categories(registry)
    ]
    x = np.column_stack([*codes, offline.model_matrix("customer", frame), offline.model_matrix("agent", frame)])
    return with_matched(x, _row_names(registry), matched_inputs(registry))


def time_split(started: pa.ChunkedArray | pa.Array, source: Path) -> Split:
    """Masks: contacts started in the newest 30 days test, the 30 days before validate, older ones train."""
    ts = started.to_numpy() if isinstance(started, pa.Array) else started.combine_chunks().to_numpy()
    if len(ts) == 0:
        raise DatasetError(f"{source}: no contacts")
    newest = ts.max()
    test_from = newest - np.timedelta64(PERIOD)
    valid_from = test_from - np.timedelta64(PERIOD)
    split = (ts <= valid_from, (ts > valid_from) & (ts <= test_from), ts > test_from)
    if not all(m.any() for m in split):
        raise DatasetError(
            f"{source}: need contacts over more than 60 days to split by time into train / validation (30 days) / "
            f"test (the newest 30 days); they span {(newest - ts.min()).astype('timedelta64[D]')}"
        )
    return split
