"""The feature contract loads, rejects broken YAML by name, hashes only what shapes the model input,
and encodes a value the same way one at a time (Redis) and by the column (parquet)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from features import EventLayout, Feature, Registry, RegistryError, UnknownFeatureError

CUSTOMER_ORDER = (
    # snapshot views: customer_profile, customer_usage, customer_account
    "tenure_months",
    "plan",
    "contract_type",
    "days_to_contract_end",
    "contract_end_day",
    "monthly_charge",
    "price_increase_pct",
    "lifetime_value",
    "segment",
    "language",
    "consent_marketing",
    "consent_profiling",
    "consent_phone",
    "consent_sms",
    "usage_change_pct_30d",
    "days_overdue",
    # events views: customer_activity, customer_contacts, customer_payments, customer_sentiment, customer_offers,
    # customer_surveys, customer_cart
    "logins_7d",
    "logins_30d",
    "days_since_last_activity",
    "usage_7d",
    "usage_30d",
    "contacts_7d",
    "contacts_30d",
    "contacts_90d",
    "repeat_contacts_30d",
    "transfers_30d",
    "open_complaint",
    "last_contact_reason",
    "failed_payments_90d",
    "last_sentiment",
    "sentiment_mean_30d",
    "offers_declined_90d",
    "offers_accepted_90d",
    "days_since_last_offer",
    "last_offer",
    "last_csat",
    "csat_mean_90d",
    "last_nps",
    "abandoned_cart_value",
    "days_since_abandoned_cart",
)
SNAPSHOT_VIEWS = ("customer_profile", "customer_usage", "customer_account")
EVENT_VIEWS = (
    "customer_activity",
    "customer_contacts",
    "customer_payments",
    "customer_sentiment",
    "customer_offers",
    "customer_surveys",
    "customer_cart",
)
DTYPES = ["float", "int", "bool", "category"]
ARROW_TYPE = {"float": pa.float64(), "int": pa.int64(), "bool": pa.bool_(), "category": pa.string()}

Contract = dict[str, Any]
nan = math.nan
_PACKAGED = Registry.load()
# A category with a default: the packaged contract has none, but the rules must hold for one.
TIER = Feature(name="tier", dtype="category", categories=("a", "b", "c"), default="b", description="d", reason="r")


def _packaged() -> Contract:
    text = resources.files("features").joinpath("registry.yaml").read_text(encoding="utf-8")
    data: Contract = yaml.safe_load(text)
    return data


def _write(tmp_path: Path, data: Contract, name: str = "registry.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _feature(data: Contract, name: str) -> dict[str, Any]:
    for view in data["views"]:
        for feature in view["features"]:
            if feature["name"] == name:
                found: dict[str, Any] = feature
                return found
    raise AssertionError(f"no feature {name} in the packaged contract")


def _view(data: Contract, name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(v for v in data["views"] if v["name"] == name)
    return found


# ---- the packaged contract -------------------------------------------------------------------------


def test_packaged_contract_loads(registry: Registry) -> None:
    assert set(registry.entities) == {"customer", "agent"}
    customer, agent = registry.entity("customer"), registry.entity("agent")
    assert (customer.join_key, agent.join_key) == ("customer_id", "agent_id")
    assert len(customer.names) == 40
    assert len(agent.names) == 34
    # Consent sits right after the profile, where the CRM snapshot carried it before it came from events.
    assert [v.name for v in customer.views] == [
        SNAPSHOT_VIEWS[0],
        "customer_consent",
        *SNAPSHOT_VIEWS[1:],
        *EVENT_VIEWS,
    ]
    assert [v.name for v in agent.views] == ["agent_profile", "agent_state"]
    assert registry.views["agent_state"].ttl_days == 1
    assert customer.view_of["days_overdue"] == "customer_account"
    assert {v.name: v.source for v in customer.views} == {
        **dict.fromkeys(SNAPSHOT_VIEWS, "snapshot"),
        **dict.fromkeys(("customer_consent", *EVENT_VIEWS), "events"),
    }
    assert registry.views["customer_consent"].ttl_days is None
    assert customer.timeless_events == {"consent_changed"}
    assert {v.source for v in agent.views} == {"snapshot"}
    # Snapshot and event features together are the whole entity, in order. A derived feature keeps its declared
    # place in that order but is not stored with the snapshot.
    consent = ("consent_marketing", "consent_profiling", "consent_phone", "consent_sms")
    assert customer.names[:16] == CUSTOMER_ORDER[:16]
    assert customer.snapshot_names == tuple(
        n for n in CUSTOMER_ORDER[:16] if n != "days_to_contract_end" and n not in consent
    )
    assert [f.name for f in customer.derived_features] == ["days_to_contract_end"]
    derive = customer.feature("days_to_contract_end").derive
    assert derive is not None
    assert (derive.kind, derive.feature) == ("days_until", "contract_end_day")
    assert tuple(f.name for f in customer.event_features) == (*consent, *customer.names[16:])
    assert all(f.aggregation is None for f in customer.snapshot_features)
    assert all(f.aggregation is not None for f in customer.event_features)
    assert customer.view_by_name["customer_activity"] is registry.views["customer_activity"]
    logins = customer.feature("logins_7d").aggregation
    assert logins is not None
    assert (logins.kind, logins.event, logins.window_days) == ("count", "login", 7)
    assert set(registry.events) == {
        "login",
        "usage",
        "contact_started",
        "contact_ended",
        "complaint",
        "payment_failed",
        "sentiment",
        "offer_presented",
        "offer_accepted",
        "offer_declined",
        "survey_answered",
        "cart_abandoned",
        "consent_changed",
        "identifier_linked",
        "identifier_unlinked",
    }
    assert registry.events["survey_answered"].fields["nps"].required is False
    reason = customer.feature("last_contact_reason").aggregation
    assert reason is not None
    assert (reason.kind, reason.event, reason.field) == ("last", "contact_ended", "intent")
    assert (
        customer.feature("last_contact_reason").categories
        == registry.events["contact_ended"].fields["intent"].categories
    )
    assert registry.views["agent_profile"].features[-2].name == "resolution_rate_30d"
    assert registry.event_columns("customer")["score"] == "float"
    assert registry.event_columns("customer")["repeat"] == "bool"
    assert registry.event_columns("agent") == {}
    assert customer.feature("plan").categories == ("basic", "standard", "premium")
    assert customer.feature("consent_marketing").default is False
    assert customer.feature("tenure_months").default == 0
    assert re.fullmatch(r"[0-9a-f]{12}", registry.version)


def test_customer_feature_order_is_stable(registry: Registry, tmp_path: Path) -> None:
    customer = registry.entity("customer")
    assert customer.names == CUSTOMER_ORDER
    assert customer.index == {name: i for i, name in enumerate(CUSTOMER_ORDER)}
    # Models see every feature but the absolute contract end date (they see days_to_contract_end instead).
    assert customer.model_names == tuple(n for n in CUSTOMER_ORDER if n != "contract_end_day")
    assert [customer.names[i] for i in customer.model_at] == list(customer.model_names)
    # plan, contract_type, segment, language, last_contact_reason, last_offer, among the model inputs
    assert customer.categorical_indices == [1, 2, 7, 8, 26, 33]
    # Loading the same contract again, from an explicit copy, resolves the same order and the same hash.
    again = Registry.load(_write(tmp_path, _packaged()))
    assert again.entity("customer").names == CUSTOMER_ORDER
    assert again.version == registry.version


def test_unknown_names_raise_unknown_feature_error(registry: Registry) -> None:
    with pytest.raises(UnknownFeatureError, match="'store'"):
        registry.entity("store")
    with pytest.raises(UnknownFeatureError, match="'shoe_size'"):
        registry.entity("customer").feature("shoe_size")


# ---- the version hash ------------------------------------------------------------------------------


def _set(feature: str, key: str, value: object) -> Callable[[Contract], None]:
    def edit(data: Contract) -> None:
        _feature(data, feature)[key] = value

    return edit


def _swap_first_two(data: Contract) -> None:
    features = _view(data, "customer_profile")["features"]
    features[0], features[1] = features[1], features[0]


def _set_view(view: str, key: str, value: object) -> Callable[[Contract], None]:
    def edit(data: Contract) -> None:
        _view(data, view)[key] = value

    return edit


@pytest.mark.parametrize(
    "edit",
    [
        _set("tenure_months", "dtype", "float"),
        _set("plan", "categories", ["basic", "standard", "premium", "family"]),
        _set("plan", "categories", ["standard", "basic", "premium"]),
        _set("tenure_months", "default", 1),
        _set("proficiency_sales", "default", 0.6),
        _set("last_sentiment", "default", 0.0),
        _swap_first_two,
    ],
    ids=["dtype", "category-added", "category-order", "int-default", "agent-default", "new-default", "order"],
)
def test_version_changes_with_the_model_input(
    registry: Registry, tmp_path: Path, edit: Callable[[Contract], None]
) -> None:
    data = _packaged()
    edit(data)
    assert Registry.load(_write(tmp_path, data)).version != registry.version


@pytest.mark.parametrize(
    "edit",
    [
        _set("tenure_months", "description", "how long they have been with us"),
        _set("plan", "reason", "subscribes to {value}"),
        _set("days_to_contract_end", "reason_negative", "out of contract for {value:.0f} days"),
        _set("plan", "pii", True),
        _set("monthly_charge", "max", 500),
        _set("tenure_months", "min", None),
        _set_view("customer_profile", "description", "reworded"),
        _set_view("customer_profile", "owner", "someone-else"),
    ],
    ids=["description", "reason", "reason-negative", "pii", "max", "no-min", "view-description", "owner"],
)
def test_version_ignores_wording(registry: Registry, tmp_path: Path, edit: Callable[[Contract], None]) -> None:
    data = _packaged()
    edit(data)
    assert Registry.load(_write(tmp_path, data)).version == registry.version


# ---- invalid contracts -----------------------------------------------------------------------------


def _unknown_key(data: Contract) -> None:
    _feature(data, "plan")["colour"] = "blue"


def _duplicate_feature(data: Contract) -> None:
    _view(data, "customer_usage")["features"].append(dict(_feature(data, "monthly_charge")))


def _default_outside_categories(data: Contract) -> None:
    _feature(data, "segment")["default"] = "enterprise"


def _unknown_entity(data: Contract) -> None:
    _view(data, "agent_state")["entity"] = "supervisor"


def _categories_on_a_number(data: Contract) -> None:
    _feature(data, "logins_30d")["categories"] = ["few", "many"]


def _unknown_dtype(data: Contract) -> None:
    _feature(data, "logins_7d")["dtype"] = "integer"


def _unknown_view_key(data: Contract) -> None:
    _view(data, "customer_account")["ttl"] = 3


def _range_on_a_category(data: Contract) -> None:
    _feature(data, "plan")["min"] = 0


def _min_above_max(data: Contract) -> None:
    _feature(data, "last_sentiment").update({"min": 1, "max": -1})


def _default_outside_range(data: Contract) -> None:
    _feature(data, "max_load")["min"] = 2  # its default is 1


def _skill_no_agent_holds(data: Contract) -> None:
    data["intent_skills"]["cancel"] = "loyalty"


def _intent_without_a_skill(data: Contract) -> None:
    del data["intent_skills"]["sales"]


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (_unknown_key, r"views\[customer_profile\]\.features\[plan\]\.colour"),
        (
            _duplicate_feature,
            r"'monthly_charge' is declared in views 'customer_profile' and 'customer_usage'",
        ),
        (_default_outside_categories, r"'segment': default 'enterprise' is not one of its categories"),
        (_unknown_entity, r"view 'agent_state': unknown entity 'supervisor'"),
        (_categories_on_a_number, r"'logins_30d': 'categories' is only for dtype 'category'"),
        (_unknown_dtype, r"views\[customer_activity\]\.features\[logins_7d\]\.dtype: Input should be 'float'"),
        (_unknown_view_key, r"views\[customer_account\]\.ttl"),
        (_range_on_a_category, r"'plan': 'min' and 'max' apply only to dtype float or int"),
        (_min_above_max, r"'last_sentiment': min 1 is above max -1"),
        (_default_outside_range, r"'max_load': default 1 is outside \[min, max\]"),
        (_skill_no_agent_holds, r"intent_skills\.cancel: skill 'loyalty' needs the agent features skill_loyalty, "),
        (_intent_without_a_skill, r"intent_skills: no skill for the intents sales"),
    ],
    ids=[
        "unknown-key",
        "duplicate-feature",
        "category-default",
        "unknown-entity",
        "stray-categories",
        "unknown-dtype",
        "view-key",
        "range-on-a-category",
        "min-above-max",
        "default-outside-range",
        "skill-no-agent-holds",
        "intent-without-a-skill",
    ],
)
def test_invalid_contract_names_file_and_field(tmp_path: Path, edit: Callable[[Contract], None], field: str) -> None:
    data = _packaged()
    edit(data)
    path = _write(tmp_path, data, "broken-contract.yaml")
    with pytest.raises(RegistryError, match=rf"broken-contract\.yaml: .*{field}"):
        Registry.load(path)


def _aggregation(feature: str, **changes: object) -> Callable[[Contract], None]:
    def edit(data: Contract) -> None:
        _feature(data, feature)["aggregation"].update(changes)

    return edit


def _drop_aggregation(data: Contract) -> None:
    del _feature(data, "contacts_30d")["aggregation"]


def _aggregation_on_a_snapshot(data: Contract) -> None:
    _feature(data, "days_overdue")["aggregation"] = {"kind": "count", "event": "payment_failed", "window_days": 30}


def _field_with_two_dtypes(data: Contract) -> None:
    # payment_failed.amount is a float; the same column name declared as an int elsewhere is ambiguous.
    data["events"]["complaint"]["fields"]["amount"] = {"dtype": "int"}


@pytest.mark.parametrize(
    ("edit", "name"),
    [
        (_aggregation("logins_7d", event="logon"), r"'logins_7d': aggregation over unknown event 'logon'"),
        (_aggregation("repeat_contacts_30d", where={"handle_time_s": True}), r"'repeat_contacts_30d'.*'handle_time_s'"),
        (_aggregation("repeat_contacts_30d", where={"repeat": "yes"}), r"'repeat_contacts_30d': 'where\.repeat'"),
        (_aggregation("open_complaint", window_days=30), r"'open_complaint': aggregation 'last' takes no window_days"),
        (_aggregation("contacts_7d", window_days=None), r"'contacts_7d': aggregation 'count' needs window_days"),
        (_aggregation("last_sentiment", field="mood"), r"'last_sentiment': event 'sentiment' has no field 'mood'"),
        (_aggregation("sentiment_mean_30d", kind="median"), r"'sentiment_mean_30d': kind: "),
        (_drop_aggregation, r"'contacts_30d': an events view needs an aggregation"),
        (_aggregation_on_a_snapshot, r"'days_overdue': aggregation is only for views with source: events"),
        (_field_with_two_dtypes, r"field 'amount' is a float here but a int"),
        (
            _aggregation("last_contact_reason", where={"intent": "fax"}),
            r"'last_contact_reason': 'where\.intent' must be one of",
        ),
        (_set("contacts_30d", "dtype", "float"), r"'contacts_30d': count of 'contact_ended' is read as int, not float"),
        (
            _aggregation("last_sentiment", event="offer_presented", field="action_id"),
            r"'last_sentiment': last of 'offer_presented' is read as category, not float",
        ),
    ],
    ids=[
        "unknown-event",
        "where-on-a-number",
        "where-not-a-bool",
        "window-on-last",
        "count-without-window",
        "unknown-event-field",
        "unknown-kind",
        "events-feature-without-aggregation",
        "aggregation-on-a-snapshot",
        "field-with-two-dtypes",
        "where-on-last-not-a-category",
        "count-as-float",
        "last-text-as-number",
    ],
)
def test_invalid_event_contract_names_the_feature_or_field(
    tmp_path: Path, edit: Callable[[Contract], None], name: str
) -> None:
    data = _packaged()
    edit(data)
    with pytest.raises(RegistryError, match=name):
        Registry.load(_write(tmp_path, data))


def test_last_and_days_since_may_be_narrowed_by_where(tmp_path: Path) -> None:
    """Consent per purpose needs the newest `consent_changed` of one purpose; the layout gives it a group."""
    data = _packaged()
    _aggregation("last_contact_reason", where={"resolved": True})(data)
    _aggregation("days_since_last_offer", event="contact_ended", where={"transferred": True})(data)
    registry = Registry.load(_write(tmp_path, data))
    layout = EventLayout(registry.entity("customer"))
    narrowed = {
        (g.event, g.where): [v.field for v in g.values]
        for g in layout.groups
        if g.where and g.event != "consent_changed"
    }
    assert narrowed == {
        ("contact_ended", (("resolved", True),)): ["intent"],
        ("contact_ended", (("transferred", True),)): [],
    }
    # The unfiltered group of the event stays: the view's age is its newest event of any kind.
    assert layout.group("contact_ended").values == ()
    # The packaged consent features: one group per purpose, each with the `granted` of its newest change.
    purposes = {g.where: [v.field for v in g.values] for g in layout.groups if g.event == "consent_changed" and g.where}
    assert purposes == {(("purpose", p),): ["granted"] for p in ("marketing", "profiling", "phone", "sms")}


def _derive(name: str, **derive: object) -> Callable[[Contract], None]:
    def edit(data: Contract) -> None:
        _feature(data, name)["derive"] = derive

    return edit


@pytest.mark.parametrize(
    ("edit", "name"),
    [
        (
            _derive("days_to_contract_end", kind="days_until", feature="contract_end"),
            r"'days_to_contract_end': derived from unknown feature 'contract_end'",
        ),
        (
            _derive("days_to_contract_end", kind="days_until", feature="logins_7d"),
            r"'days_to_contract_end': derived from 'logins_7d', which is not a stored snapshot feature",
        ),
        (
            _derive("days_overdue", kind="days_until", feature="days_to_contract_end"),
            r"'days_overdue': derived from 'days_to_contract_end', which is not a stored snapshot feature",
        ),
        (
            _derive("days_to_contract_end", kind="days_until", feature="max_load"),
            r"'days_to_contract_end': derived from 'max_load' of entity 'agent', not 'customer'",
        ),
        (
            _derive("days_to_contract_end", kind="days_until", feature="monthly_charge"),
            r"'days_to_contract_end': days_until reads an int day number as an int, not float as int",
        ),
        (
            _set("days_to_contract_end", "dtype", "float"),
            r"'days_to_contract_end': days_until reads an int day number as an int, not int as float",
        ),
        (
            _derive("days_to_contract_end", kind="weeks_until", feature="contract_end_day"),
            r"'days_to_contract_end': kind:",
        ),
        (_derive("days_to_contract_end", kind="days_until"), r"'days_to_contract_end': feature: Field required"),
        (
            _derive("logins_7d", kind="days_until", feature="contract_end_day"),
            r"'logins_7d': derive is only for views with source: snapshot",
        ),
    ],
    ids=[
        "unknown-source",
        "source-an-event-feature",
        "source-derived",
        "source-of-another-entity",
        "source-not-an-int",
        "derived-not-an-int",
        "unknown-kind",
        "no-source",
        "derive-in-an-events-view",
    ],
)
def test_invalid_derivation_names_the_feature(tmp_path: Path, edit: Callable[[Contract], None], name: str) -> None:
    data = _packaged()
    edit(data)
    with pytest.raises(RegistryError, match=name):
        Registry.load(_write(tmp_path, data))


def test_a_derived_feature_is_in_the_version(registry: Registry, tmp_path: Path) -> None:
    """Computing a feature another way changes the model input, so the version; storing it instead does too."""
    data = _packaged()
    del _feature(data, "days_to_contract_end")["derive"]
    assert Registry.load(_write(tmp_path, data)).version != registry.version


def test_the_customer_id_is_pii_and_no_feature_is(registry: Registry) -> None:
    customer, agent = registry.entity("customer"), registry.entity("agent")
    assert customer.pii is True
    assert agent.pii is False
    assert [f.name for f in (*customer.features, *agent.features) if f.pii] == []


@given(
    low=st.floats(-1e6, 1e6) | st.none(),
    high=st.floats(-1e6, 1e6) | st.none(),
    value=st.floats(-2e6, 2e6),
)
def test_in_range_respects_each_declared_bound(low: float | None, high: float | None, value: float) -> None:
    if low is not None and high is not None and low > high:
        low, high = high, low
    feature = Feature(name="x", dtype="float", description="x", reason="x", min=low, max=high)
    assert feature.in_range(value) is ((low is None or value >= low) and (high is None or value <= high))


def test_unreadable_contract_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.yaml"
    with pytest.raises(RegistryError, match=r"nowhere\.yaml: cannot read"):
        Registry.load(missing)
    garbled = tmp_path / "garbled.yaml"
    garbled.write_text("entities: [unclosed\n", encoding="utf-8")
    with pytest.raises(RegistryError, match=r"garbled\.yaml: cannot read"):
        Registry.load(garbled)


def test_default_of_the_wrong_type_is_rejected(tmp_path: Path) -> None:
    data = _packaged()
    _feature(data, "logins_30d")["default"] = "none yet"
    with pytest.raises(RegistryError, match="logins_30d"):
        Registry.load(_write(tmp_path, data))


# ---- encode and encode_column agree ----------------------------------------------------------------


def _all_features() -> list[Feature]:
    packaged = [f for schema in _PACKAGED.entities.values() for f in schema.features]
    with_defaults = [
        TIER,
        Feature(name="flag", dtype="bool", default=True, description="d", reason="r"),
        Feature(name="level", dtype="float", default=-2.5, description="d", reason="r"),
        Feature(name="count", dtype="int", default=3, description="d", reason="r"),
    ]
    return packaged + with_defaults


FEATURES = _all_features()
_LIMIT = 2**53  # float64 holds every integer up to here; arrow refuses a lossy int64 -> float64 cast


def _values(feature: Feature) -> st.SearchStrategy[list[Any]]:
    if feature.dtype == "float":
        value: st.SearchStrategy[Any] = st.floats(allow_nan=True, allow_infinity=True)
    elif feature.dtype == "int":
        value = st.integers(min_value=-_LIMIT, max_value=_LIMIT)
    elif feature.dtype == "bool":
        value = st.booleans()
    else:
        assert feature.categories is not None
        # Unknown strings are non-empty: an empty string is the separate case below.
        value = st.sampled_from(feature.categories) | st.text(min_size=1, max_size=8)
    return st.lists(st.none() | value, min_size=1, max_size=12)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPES)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_encode_and_encode_column_agree(dtype: str, data: st.DataObject) -> None:
    feature = data.draw(st.sampled_from([f for f in FEATURES if f.dtype == dtype]), label="feature")
    values = data.draw(_values(feature), label="values")
    one_by_one = np.array([feature.encode(v) for v in values], dtype=np.float64)
    by_column = feature.encode_column(pa.array(values, type=ARROW_TYPE[feature.dtype]))
    assert by_column.dtype == np.float64
    assert np.array_equal(one_by_one, by_column, equal_nan=True), (values, one_by_one, by_column)


@pytest.mark.parametrize(
    ("feature", "values", "expected"),
    [
        (_PACKAGED.entity("customer").feature("plan"), ["premium", "basic", None, "gold"], [2, 0, nan, nan]),
        (_PACKAGED.entity("customer").feature("consent_marketing"), [True, None, False], [1, 0, 0]),
        (_PACKAGED.entity("customer").feature("last_sentiment"), [-0.5, None], [-0.5, nan]),
        (_PACKAGED.entity("agent").feature("max_load"), [4, None], [4, 1]),
        (TIER, ["c", None, "z"], [2, 1, nan]),
    ],
    ids=["category-codes", "bool-default", "float-no-default", "int-default", "category-default"],
)
def test_encode_column_values(feature: Feature, values: list[Any], expected: list[float]) -> None:
    column = feature.encode_column(pa.array(values, type=ARROW_TYPE[feature.dtype]))
    assert np.array_equal(column, np.array(expected, dtype=np.float64), equal_nan=True)


def test_empty_string_encodes_alike_for_a_category_with_default() -> None:
    by_column = TIER.encode_column(pa.array([""], type=pa.string()))
    assert np.array_equal(by_column, np.array([TIER.encode("")]), equal_nan=True)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", 1.0), ("0", 0.0), ("true", 1.0), ("False", 0.0), ("yes", 1.0), (None, 0.0), ("", 0.0)],
    ids=["one", "zero", "true", "false", "yes", "none-default", "empty-default"],
)
def test_encode_reads_bool_text_from_redis(registry: Registry, raw: str | None, expected: float) -> None:
    assert registry.entity("customer").feature("open_complaint").encode(raw) == expected


# ---- phrases ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "phrase"),
    [
        ("days_to_contract_end", -30.0, "contract ended 30 days ago"),
        ("days_to_contract_end", -1.0, "contract ended 1 days ago"),
        ("days_to_contract_end", 12.0, "contract ends in 12 days"),
        ("days_to_contract_end", 0.0, "contract ends in 0 days"),
        ("days_to_contract_end", math.nan, "days until the contract ends (negative once ended) unknown"),
        ("usage_change_pct_30d", -12.0, "usage changed -12% in 30 days"),
        ("plan", 2.0, "on the premium plan"),
        ("open_complaint", 1.0, "has an open complaint"),
    ],
    ids=["ended", "ended-yesterday", "ends", "ends-today", "unknown", "no-negative-form", "category", "bool"],
)
def test_phrase(registry: Registry, name: str, value: float, phrase: str) -> None:
    assert registry.entity("customer").feature(name).phrase(value) == phrase


def test_only_an_events_view_may_never_expire(tmp_path: Path) -> None:
    data = _packaged()
    _view(data, "customer_usage")["ttl_days"] = None
    with pytest.raises(
        RegistryError, match=r"views\[customer_usage\]: Value error, ttl_days: a snapshot view needs a TTL"
    ):
        Registry.load(_write(tmp_path, data))
