"""Request and response bodies of the API, named for what they carry."""

from __future__ import annotations

from typing import Annotated, Literal, Self

import msgspec
from pydantic import BaseModel, ConfigDict, Field, model_validator

from features import Registry
from features.events import EventsBody, body_model
from features.identity import Identifier, IdentifierError, normalize
from features.registry import ENTITY_ID_PATTERN
from service.catalog import Channel, Intent, LiveContext
from service.decision_records import RETENTION_HORIZON_DAYS

_ID = ENTITY_ID_PATTERN
DECISION_ID_PATTERN = r"^[0-9a-f]{32}$"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ContactIdentifier(_Body):
    """An identifier a contact arrives with (``identifier_linked`` events tie it to a customer)."""

    identifier_kind: Literal["phone", "email", "chat", "account"]
    identifier: str = Field(
        min_length=1,
        max_length=128,
        description="A phone number with its country code (+...), an email, a chat handle or an account number; "
        "normalised (E.164, lower-cased email) before the lookup.",
    )

    @model_validator(mode="after")
    def _normalise(self) -> Self:
        try:
            self.identifier = normalize(self.identifier_kind, self.identifier).value
        except IdentifierError as exc:
            raise ValueError(f"identifier: {exc}") from exc
        return self

    @property
    def normalised(self) -> Identifier:
        """The identifier as the store keys it."""
        return Identifier(self.identifier_kind, self.identifier)


class RecommendRequest(_Body):
    """Who the agent is talking to, and on which channel."""

    customer_id: str | None = Field(
        default=None, pattern=_ID, description="Our customer id (or give `identifier`).", examples=["C000042"]
    )
    identifier: ContactIdentifier | None = Field(
        default=None,
        description="Instead of `customer_id`, what the contact arrived with: the store resolves it to the customer "
        "it is linked to. One it does not know is an unknown customer (`cold_start`, `customer_id` null), never "
        "someone else.",
        examples=[{"identifier_kind": "phone", "identifier": "+1 202 555 0143"}],
    )
    channel: Channel = Field(description="The channel of the live contact.", examples=["voice"])
    top_k: int | None = Field(default=None, ge=1, le=50, description="How many actions at most.")
    context: LiveContext | None = Field(
        default=None,
        description="What the desktop knows of the contact now: triggers and context weights read it, and "
        "`wants_person` calls for the escape action (a transfer to a specialist).",
        examples=[{"intent": "cancel", "sentiment": -0.4, "wants_person": False}],
    )

    @model_validator(mode="after")
    def _one_customer(self) -> RecommendRequest:
        if (self.customer_id is None) == (self.identifier is None):
            raise ValueError("give exactly one of customer_id or identifier")
        return self


class ActionOut(BaseModel):
    """A ranked next-best action."""

    action_id: str
    title: str
    script: str
    group: str = Field(description="The action's priority group: the answer is ranked by group priority, then score.")
    score: float = Field(
        description="expected_value × lever × context_weight (divided by them when expected_value is negative, so "
        "a lift always lifts); the ranking key within a group priority."
    )
    context_weight: float = Field(description="The live context's weight on the action's group (1: none applied).")
    propensity: float = Field(description="Calibrated P(the customer accepts).")
    expected_value: float = Field(
        description="Expected value gained over no offer: lifetime value × (churn risk − churn_if_offered) "
        "+ propensity × (value − cost)."
    )
    churn_if_offered: float | None = Field(
        description="The churn model's P(churn within 30 days | this action offered); the gap to the customer's "
        "churn_risk is the action's learned effect. Null when no model is loaded (the catalog's priors ranked)."
    )
    reasons: list[str] = Field(description="Up to three plain phrases an agent can read back.")


class CustomerSummary(BaseModel):
    """The customer at a glance."""

    churn_risk: float | None
    risk_band: Literal["low", "medium", "high"] | None
    lifetime_value: float | None
    sentiment: float | None


class RecommendResponse(BaseModel):
    """Ranked actions for the agent desktop."""

    decision_id: str
    customer_id: str | None = Field(
        description="The customer decided for: the one asked, or the one `identifier` resolved to (null when it "
        "resolved to nobody)."
    )
    cold_start: bool = Field(description="True when the store knows nothing of this customer: defaults were scored.")
    actions: list[ActionOut]
    customer: CustomerSummary
    model_versions: dict[str, str]
    feature_contract: str
    catalog_version: str = Field(description="The action catalog that answered (a hash of its file).")
    degraded: bool = Field(description="True when a dependency failed and the documented fallback answered.")
    degraded_reasons: list[str]


class AssignRequest(_Body):
    """A contact waiting to be routed, and who could take it."""

    customer_id: str = Field(pattern=_ID, examples=["C000042"])
    intent: Intent = Field(examples=["billing"])
    channel: Channel = Field(examples=["voice"])
    language: str = Field(min_length=2, max_length=8, examples=["en"])
    agent_ids: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Candidate agents (at most 200).",
        examples=[["A0001", "A0002", "A0003"]],
    )
    queue: str | None = Field(
        default=None,
        pattern=r"^[a-z][a-z0-9_]{0,31}$",
        description="A queue whose members are the candidates.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> AssignRequest:
        if (self.agent_ids is None) == (self.queue is None):
            raise ValueError("give exactly one of agent_ids or queue")
        return self


# The assign answer is built per request from up to 200 candidates: msgspec Structs, as for the customer-features
# answer below. Building it as dicts, validating them as pydantic models and serializing those cost ~95 us with 100
# candidates (33 eligible, 67 excluded); building the Structs and encoding them, ~17 us. The answer is correct by
# construction (the service builds each field from typed values), its OpenAPI schema is the same, and its JSON is
# the same bytes as pydantic's (tests/service/test_schemas.py): both write a float as its shortest round-trip
# digits, and differ only in the exponent from 1e16 up ("1e+16" against "1e16"), which no field here reaches.


class AgentOut(msgspec.Struct, frozen=True):
    """A ranked candidate agent."""

    agent_id: str
    score: Annotated[
        float, msgspec.Meta(description="p_resolution + retention bonus − occupancy penalty; the ranking key.")
    ]
    p_resolution: Annotated[
        float,
        msgspec.Meta(
            description="P(first-contact resolution) of this agent with this contact: the resolution model's, or "
            "without it the agent's measured resolution rate for the intent over 180 days, pulled toward its rating "
            "(see ranked_by)."
        ),
    ]
    expected_handle_time_s: Annotated[
        float | None,
        msgspec.Meta(
            description="Expected handle time in seconds: the resolution model's, or without it the agent's 30-day "
            "mean; null when neither is known."
        ),
    ]
    reasons: list[str]


class ExcludedOut(msgspec.Struct, frozen=True):
    """A candidate that failed a hard constraint."""

    agent_id: str
    reason: str


class AssignResponse(msgspec.Struct, frozen=True):
    """Ranked agents for the routing engine."""

    decision_id: str
    customer_id: str
    agents: list[AgentOut]
    excluded: list[ExcludedOut]
    churn_risk: float | None
    ranked_by: Annotated[
        Literal["resolution_model", "measured_rate", "order_given"],
        msgspec.Meta(
            description="resolution_model: the learned model scored every candidate; measured_rate: it is "
            "unavailable and the agents' measured rates ranked them (degraded); order_given: the online store is "
            "unavailable."
        ),
    ]
    model_versions: dict[str, str]
    degraded: bool
    degraded_reasons: list[str]


class FeedbackRequest(_Body):
    """What came of a decision: the customer's answer to an action and whether they stayed (recommend), or the
    contact's end (assign)."""

    decision_id: str = Field(
        pattern=DECISION_ID_PATTERN,
        description="The decision's id, from its answer.",
        examples=["e385a2d3b0be434d943534fb416ed84f"],
    )
    action_id: str | None = Field(
        default=None, max_length=64, description="Recommend: the action answered (one the decision returned)."
    )
    outcome: Literal["accepted", "declined", "ignored"] | None = Field(
        default=None, description="Recommend: what the customer did with the action."
    )
    retained: bool | None = Field(
        default=None,
        description=f"Recommend: whether the customer was still a customer {RETENTION_HORIZON_DAYS} days after the "
        f"decision (the churn horizon: the churn model predicts churn within {RETENTION_HORIZON_DAYS} days). Alone "
        "or beside action_id and outcome, once the horizon has ended, either way (422 before). The shadow report's "
        "recommend reward rests on it.",
    )
    resolved: bool | None = Field(
        default=None, description="Assign: whether the contact was resolved at first contact."
    )
    csat: int | None = Field(default=None, ge=1, le=5, description="Assign: the customer's satisfaction, 1 to 5.")
    agent_id: str | None = Field(
        default=None, pattern=_ID, description="Assign: the agent who took the contact; the top-ranked one if omitted."
    )

    @model_validator(mode="after")
    def _one_kind(self) -> FeedbackRequest:
        action = self.action_id is not None or self.outcome is not None
        recommend = action or self.retained is not None
        assign = self.resolved is not None or self.csat is not None or self.agent_id is not None
        if recommend and assign:
            raise ValueError(
                "give action_id and outcome and/or retained (recommend) or resolved and/or csat (assign), not both"
            )
        if action and (self.action_id is None or self.outcome is None):
            raise ValueError("give action_id and outcome together")
        if not recommend and self.resolved is None and self.csat is None:
            raise ValueError("give action_id and outcome and/or retained (recommend) or resolved and/or csat (assign)")
        return self


class FeedbackResponse(BaseModel):
    """What this feedback recorded."""

    decision_id: str
    kind: Literal["recommend", "assign"]
    recorded: list[str] = Field(description="Answers recorded now: the action id and/or retained, or resolved / csat.")
    duplicates: list[str] = Field(
        description="Answers recorded before for this decision: the first one stands and counts once."
    )
    events_applied: int = Field(description="Events fed to the customer's state (offer and survey events).")


class CatalogReloadResponse(BaseModel):
    """The catalog now in force."""

    path: str
    version: str = Field(description="A hash of the file's bytes.")
    actions: list[str]
    reloaded: bool = Field(description="False when the file's version was already in force.")


class Health(msgspec.Struct, frozen=True):
    """Liveness, and the models in force: which versions, loaded from where, and what went wrong updating them.

    A msgspec Struct, not a pydantic model: ``/health`` is polled often and is the benchmarks' same-run baseline
    of what the server and the framework cost alone, so its answer stays about as cheap to build as ``{"status":
    "ok"}`` was (the pydantic model cost 10 us more per request)."""

    status: Literal["ok"]
    model_versions: Annotated[
        dict[str, str], msgspec.Meta(description="Registered name → version of every model in force.")
    ]
    models_from: Annotated[
        dict[str, Literal["registry", "last_known_good"]],
        msgspec.Meta(
            description="Registered name → where its bundle was loaded from: the MLflow registry, or the copy on "
            "local disk the service kept when it last loaded it (MLflow was unreachable)."
        ),
    ]
    model_registry: Annotated[
        Literal["reachable", "unreachable", "not asked yet"],
        msgspec.Meta(description="Whether the last look at the MLflow registry (every NBA_MODEL_POLL_S s) reached it."),
    ]
    model_problems: Annotated[
        dict[str, str],
        msgspec.Meta(
            description="Registered name → why the version its alias names is not in force (a corrupt or missing "
            "artifact, a failed check, an alias removed); empty when all is well."
        ),
    ]
    catalog_problem: Annotated[
        str | None,
        msgspec.Meta(
            description="Why the catalog file's newest version was refused (its file, action and field), so the "
            "running catalog stayed; null when the catalog in force is the file's newest version."
        ),
    ] = None


class Readiness(BaseModel):
    """Whether the service can give full answers, and if not, why."""

    ready: bool
    redis: str
    models: str
    resolution_model: str = Field(
        description="ok, or why routing falls back to measured rates; not needed for readiness (a documented fallback)."
    )
    model_versions: dict[str, str]
    feature_contract: str


CUSTOMER_ID_PATTERN = _ID
"""What a customer id may look like, for path parameters (bodies use the same ``_ID`` through their fields)."""


# The customer-features answer is built per request from up to a hundred values: msgspec Structs, which Litestar
# encodes natively, cost a fraction of pydantic models to build and serialize (``make bench`` prints the read
# over HTTP). Their fields are typed and documented for the OpenAPI schema all the same.


class FeatureValueOut(msgspec.Struct, frozen=True):
    """One feature of a customer as the online store serves it."""

    name: str
    view: str
    # ``float`` stands for int too (an int is a JSON number): with both, the schema's oneOf matched an integer twice,
    # and a validator refused every answer that held one (schemathesis found it).
    value: Annotated[
        bool | float | str | None,
        msgspec.Meta(
            description="Human form: category name, bool or number; null when unknown without a default; "
            "'<redacted>' for a PII feature."
        ),
    ]
    defaulted: Annotated[
        bool, msgspec.Meta(description="True when the store had no fresh value and the contract's default stands in.")
    ]


class ViewFreshnessOut(msgspec.Struct, frozen=True):
    """How old one feature view's values are, against its freshness budget."""

    name: str
    age_seconds: Annotated[
        float | None, msgspec.Meta(description="Seconds since the view was observed; null if never written.")
    ]
    stale: Annotated[bool, msgspec.Meta(description="Older than its TTL: its features are served as defaults.")]
    ttl_seconds: Annotated[
        float | None, msgspec.Meta(description="The view's freshness budget; null for one that never expires.")
    ]


class CustomerFeaturesResponse(msgspec.Struct, frozen=True):
    """A customer's online feature values and their freshness, for debugging a decision."""

    customer_id: str
    found: bool
    features: Annotated[list[FeatureValueOut], msgspec.Meta(description="In the feature contract's order.")]
    views: list[ViewFreshnessOut]
    feature_contract: str


class CustomerLookup(ContactIdentifier):
    """Who is this contact: an identifier the customer was linked to (``identifier_linked`` events)."""

    view: str | None = Field(default=None, description="Only this feature view's values and freshness.")


class ErasureResponse(BaseModel):
    """The outcome of erasing a customer (the offline mark is always made; ``erased`` is about Redis)."""

    customer_id: str
    erased: bool = Field(description="False when the online store held nothing for this customer.")


EventsRequest = EventsBody
"""One event, or ``{"events": [...]}``: the contract's event types, validated field by field (see features.events).

Here only the base, whose ``events`` is the list either way: the model that validates is made from the contract the
app serves, by :func:`events_request` in ``create_app``, which hands it to the route under this name. Not at import:
every ``nba`` command imports this module, and a bad ``registry.yaml`` must stop only the commands that read it, with
its error naming the field, not all of them with a traceback."""


def events_request(registry: Registry) -> dict[str, type[EventsBody]]:
    """The name ``EventsRequest`` bound to ``registry``'s body model, for the route's signature namespace."""
    return {"EventsRequest": body_model(registry)}


class EventResult(BaseModel):
    """What became of one event."""

    event_id: str
    status: Literal["applied", "duplicate", "too_old", "erased"] = Field(
        description="applied: the state changed; duplicate: this event_id was applied before; too_old: older "
        "than any feature looks back, so it cannot change the state; erased: the customer was erased (right to "
        "erasure), so nothing of the event is kept."
    )


class EventsResponse(BaseModel):
    """The outcome of the events sent, in the order sent: the same shape for one event as for a batch."""

    applied: int
    duplicates: int
    too_old: int
    erased: int
    results: list[EventResult]
