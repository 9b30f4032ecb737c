"""The simulated world is deterministic, honours the feature contract and has the ground truth we claim."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from features.identity import LINKED, UNLINKED
from features.registry import Registry
from training.routing_evaluation import oracle_inputs
from training.world import (
    ACTIONS,
    EVENT_ENVELOPE,
    TABLES,
    WorldConfig,
    behaviour_probabilities,
    event_features_at,
    simulate,
    true_accept_probability,
    true_churn_probability,
    true_expected_value,
)
from training.world.contact_center import RESULT_WINDOWS, _intent_results
from training.world.contract import _derived
from training.world.routing_oracle import true_csat, true_handle_time, true_resolution_probability

END = dt.date(2024, 6, 30)
UTC = dt.UTC


def _read(out: Path) -> dict[str, pd.DataFrame]:
    return {name: pd.read_parquet(out / f"{name}.parquet") for name in TABLES}


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    summary = simulate(WorldConfig(customers=2000, agents=20, months=6, seed=3, end=END), out)
    assert summary.events == pq.read_metadata(out / "customer_events.parquet").num_rows
    return out


@pytest.fixture(scope="module")
def world(world_dir: Path) -> dict[str, pd.DataFrame]:
    return _read(world_dir)


@pytest.fixture(scope="module")
def observed(world_dir: Path, world: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Every snapshot row with the event features as of its decision (the label ts): what the models see."""
    snaps = world["customer_snapshots"]
    ts = (snaps["feature_ts"] + pd.Timedelta(days=1)).to_numpy()
    events = pq.read_table(world_dir / "customer_events.parquet")
    reg = Registry.load()
    derived = event_features_at(events, reg, snaps["customer_id"].to_numpy(), ts)
    days = (snaps["feature_ts"] + pd.Timedelta(days=1)).dt.tz_localize(None).to_numpy().astype("datetime64[D]")
    at_decision = _derived(reg, "customer", {n: snaps[n].to_numpy() for n in snaps.columns}, days.astype(np.int64))
    return snaps.assign(ts=snaps["feature_ts"] + pd.Timedelta(days=1), **derived, **at_decision)


def _columns(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    return {name: frame[name].to_numpy() for name in Registry.load().entity("customer").names}


def test_same_seed_is_identical_and_other_seed_differs(tmp_path: Path) -> None:
    config = WorldConfig(customers=2000, agents=10, months=3, seed=11, end=END)
    simulate(config, tmp_path / "a")
    simulate(config, tmp_path / "b")
    simulate(WorldConfig(customers=2000, agents=10, months=3, seed=12, end=END), tmp_path / "c")
    a, b, c = _read(tmp_path / "a"), _read(tmp_path / "b"), _read(tmp_path / "c")
    for name in TABLES:
        pd.testing.assert_frame_equal(a[name], b[name])
        file = f"{name}.parquet"
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes()
    assert not a["customer_snapshots"].equals(c["customer_snapshots"])
    assert not a["customer_events"].equals(c["customer_events"])


def test_columns_follow_the_registry(world: dict[str, pd.DataFrame]) -> None:
    reg = Registry.load()
    snaps, agents = world["customer_snapshots"], world["agent_snapshots"]
    assert list(snaps.columns) == ["customer_id", "feature_ts", *reg.entity("customer").snapshot_names]
    assert set(agents.columns) - {"agent_id", "feature_ts"} == set(reg.entity("agent").names)
    for feature in reg.entity("customer").snapshot_features:
        if feature.dtype == "category":
            assert set(snaps[feature.name]) <= set(feature.categories or ())
    assert str(snaps["feature_ts"].dtype) == "datetime64[us, UTC]"
    assert snaps["customer_id"].str.fullmatch(r"C\d{6}").all()
    assert agents[["speaks_en", "speaks_es", "speaks_fr"]].any(axis=1).all()
    assert snaps.groupby("customer_id")["tenure_months"].diff().dropna().eq(1).all()


def test_events_table_follows_the_registry(world_dir: Path) -> None:
    reg = Registry.load()
    events = pq.read_table(world_dir / "customer_events.parquet")
    columns = reg.event_columns("customer")
    assert events.column_names == [*EVENT_ENVELOPE, *columns]
    arrow = {"category": pa.string(), "str": pa.string(), "bool": pa.bool_(), "float": pa.float64(), "int": pa.int64()}
    assert events.schema.field("occurred_at").type == pa.timestamp("us", tz="UTC")
    for name in ("event_id", "customer_id", "type"):
        assert events.schema.field(name).type == pa.string()
    for name, dtype in columns.items():
        assert events.schema.field(name).type == arrow[dtype], name
    frame = events.to_pandas()
    assert frame["event_id"].is_unique
    # Every customer event type but identity ones: the world's customers have no phone numbers or emails.
    simulated = {name for name, e in reg.events.items() if e.entity == "customer"} - {LINKED, UNLINKED}
    assert set(frame["type"]) == simulated
    assert frame["customer_id"].str.fullmatch(r"C\d{6}").all()
    sorted_frame = frame.sort_values(["occurred_at", "event_id"], kind="stable")
    assert (sorted_frame.index == frame.index).all()
    for kind, spec in reg.events.items():
        rows = frame[frame["type"] == kind]
        for name in columns:
            if name not in spec.fields:
                assert rows[name].isna().all(), (kind, name)
            elif spec.fields[name].required:
                assert rows[name].notna().all(), (kind, name)
            else:  # an optional field is sometimes there and sometimes not
                assert 0 < rows[name].notna().mean() < 1, (kind, name)
        for name, field in spec.fields.items():
            values = rows[name].dropna()
            if field.categories is not None:
                assert set(values) <= set(field.categories)
            if field.min is not None:
                assert (values >= field.min).all()
            if field.max is not None:
                assert (values <= field.max).all()
    assert set(frame.loc[frame["type"].str.startswith("offer_"), "action_id"]) <= set(ACTIONS) - {"no_action"}
    # The demo-sized world stays modest: a few dozen events per customer-month.
    assert len(frame) < 2000 * 9 * 40
    assert (frame.loc[frame["type"] == "usage", "units"] % 1 == 0).all()  # whole units: sums exact in any order


def test_no_event_after_the_end_and_history_before_the_first_snapshot(world: dict[str, pd.DataFrame]) -> None:
    events, snaps = world["customer_events"], world["customer_snapshots"]
    end = pd.Timestamp(END, tz="UTC")
    assert events["occurred_at"].max() <= end
    first = snaps["feature_ts"].min()
    assert events["occurred_at"].min() <= first - pd.Timedelta(days=85)
    # Events come only from customers still there: none after the snapshot following a churn.
    labels = world["churn_labels"]
    gone = labels[labels["churned"] == 1].set_index("customer_id")["ts"]
    after = events.join(gone.rename("gone"), on="customer_id", how="inner")
    non_offer = ~after["type"].str.startswith("offer_")
    assert (after.loc[non_offer, "occurred_at"] < after.loc[non_offer, "gone"]).all()


def test_contacts_are_contact_events(world: dict[str, pd.DataFrame]) -> None:
    contacts, events = world["contacts"], world["customer_events"]
    ended = events[events["type"] == "contact_ended"]
    joined = contacts.merge(
        ended, left_on=["customer_id", "ts"], right_on=["customer_id", "occurred_at"], suffixes=("", "_ev")
    )
    assert len(joined) >= len(contacts)
    assert (joined["intent"] == joined["intent_ev"]).mean() > 0.99
    assert contacts["transferred"].between(0, 1).all()
    assert 0.03 < contacts["transferred"].mean() < 0.4
    assert contacts["repeat"].mean() > 0


def test_contacts_start_before_they_end_and_surveys_follow_them(world: dict[str, pd.DataFrame]) -> None:
    contacts, events = world["contacts"], world["customer_events"]
    started = events[events["type"] == "contact_started"]
    assert len(started) >= len(contacts)  # the events hold the warm-up months too
    began = contacts["ts"] - pd.to_timedelta(contacts["handle_time_s"].round(), unit="s")
    joined = contacts.assign(began=began).merge(
        started, left_on=["customer_id", "began"], right_on=["customer_id", "occurred_at"], suffixes=("", "_ev")
    )
    assert len(joined) >= len(contacts)
    assert (joined["intent"] == joined["intent_ev"]).mean() > 0.99
    assert (joined["channel"] == joined["channel_ev"]).mean() > 0.99
    surveys = events[events["type"] == "survey_answered"].sort_values("occurred_at")
    assert 0.25 < len(surveys) / len(started) < 0.35
    # Each survey answers the customer's contact that ended within the half hour before it (the contacts
    # table starts with the first written month).
    written = surveys[surveys["occurred_at"] > contacts["ts"].min() + pd.Timedelta(minutes=30)]
    ended = contacts[["customer_id", "ts", "resolved"]].rename(columns={"resolved": "contact_resolved"})
    answered = pd.merge_asof(written, ended.sort_values("ts"), left_on="occurred_at", right_on="ts", by="customer_id")
    assert (answered["occurred_at"] - answered["ts"]).between(pd.Timedelta(0), pd.Timedelta(minutes=30)).all()
    csat = answered.groupby("contact_resolved")["csat"].mean()
    assert csat[1] > csat[0] + 1.0  # a resolved contact is rated well above an unresolved one
    assert 0.4 < surveys["nps"].notna().mean() < 0.6


def test_agent_results_are_the_last_month_of_contacts(world: dict[str, pd.DataFrame]) -> None:
    snapshots = world["agent_snapshots"]
    contacts, agents = world["contacts"], snapshots[snapshots["feature_ts"] == snapshots["feature_ts"].max()]
    agents = agents.set_index("agent_id")
    recent = contacts[contacts["ts"] > pd.Timestamp(END, tz="UTC") - pd.Timedelta(days=30)]
    by_agent = recent.groupby("agent_id").agg(rate=("resolved", "mean"), seconds=("handle_time_s", "mean"))
    np.testing.assert_allclose(agents.loc[by_agent.index, "resolution_rate_30d"], by_agent["rate"], atol=5e-4)
    np.testing.assert_allclose(agents.loc[by_agent.index, "handle_time_mean_30d_s"], by_agent["seconds"], atol=0.05)
    idle = agents.index.difference(by_agent.index)
    assert agents.loc[idle, ["resolution_rate_30d", "handle_time_mean_30d_s"]].isna().all().all()


def test_measured_rates_per_skill_recount_the_logged_contacts_before_the_snapshot(
    world: dict[str, pd.DataFrame],
) -> None:
    # Each window's rate and count per skill is a recount of the contacts the agent ended before the snapshot
    # (so never a contact routed with it), wherever the window's months were all written (the world also
    # simulates unwritten warm-up months before them).
    snapshots, contacts = world["agent_snapshots"], world["contacts"]
    skill_of = Registry.load().intent_skills
    contacts = contacts.assign(skill=contacts["intent"].map(skill_of))
    first_written = contacts["ts"].min()
    checked = 0
    for window, months in RESULT_WINDOWS.items():
        for at, agents in snapshots.groupby("feature_ts"):
            since = at - pd.Timedelta(days=30 * months)
            if since + pd.Timedelta(days=30) < first_written:
                continue
            counted = contacts[(contacts["ts"] > since) & (contacts["ts"] < at)]
            by = counted.groupby(["agent_id", "skill"])["resolved"].agg(["size", "mean"])
            agents = agents.set_index("agent_id")
            for skill in ("billing", "technical", "retention", "sales"):
                size = by["size"].xs(skill, level="skill").reindex(agents.index, fill_value=0)
                rate = by["mean"].xs(skill, level="skill").reindex(agents.index)
                np.testing.assert_array_equal(agents[f"contacts_{skill}_{window}"], size)
                np.testing.assert_allclose(agents[f"resolution_rate_{skill}_{window}"], rate, atol=5e-4)
            checked += 1
    assert checked == 4 + 1  # 90 days: the last four snapshots of six written months; 180 days: the last


@settings(max_examples=100, deadline=None)
@given(
    st.integers(1, 8).flatmap(
        lambda n: st.lists(arrays(np.int64, (2, 3, 4), elements=st.integers(0, 20)), min_size=n, max_size=n)
    )
)
def test_each_window_sums_its_newest_months(months: list[np.ndarray]) -> None:
    # For any history, also one shorter than a window (a world's first snapshots): a window counts its newest
    # months only, and a rate is resolved over handled (NaN for none).
    months = [np.stack([m[0] + m[1], m[1]]) for m in months]  # resolved never exceeds handled
    out = _intent_results(months)
    for window, n in RESULT_WINDOWS.items():
        handled, resolved = sum(m[0] for m in months[-n:]), sum(m[1] for m in months[-n:])
        for j, skill in enumerate(("billing", "technical", "retention", "sales")):
            np.testing.assert_array_equal(out[f"contacts_{skill}_{window}"], handled[:, j])
            expected = np.where(handled[:, j] > 0, resolved[:, j] / np.maximum(handled[:, j], 1), np.nan)
            np.testing.assert_allclose(out[f"resolution_rate_{skill}_{window}"], expected, atol=5e-4)


def test_the_rating_is_a_stale_noisy_coarse_view_of_the_latent_skill(world: dict[str, pd.DataFrame]) -> None:
    snapshots, truth = world["agent_snapshots"], world["agent_truth"]
    last = truth[truth["month_end"] == truth["month_end"].max()].set_index("agent_id")
    for skill in ("billing", "technical", "retention", "sales"):
        rating = snapshots.groupby("agent_id")[f"proficiency_{skill}"]
        assert rating.nunique().eq(1).all()  # set at onboarding, never updated
        assert set(snapshots[f"proficiency_{skill}"].round(3)) <= {0.4, 0.5, 0.6, 0.7, 0.8}  # five levels
        latent = truth.groupby("agent_id")[f"talent_{skill}"]
        assert (latent.max() - latent.min()).gt(0).all()  # the latent skill drifts month to month
        # The rating sees the latent skill, through noise: related, far from the same.
        agreement = np.corrcoef(rating.first().loc[last.index], last[f"talent_{skill}"])[0, 1]
        assert 0.2 < agreement < 0.9
    experience = snapshots.pivot(index="feature_ts", columns="agent_id", values="experience_months")
    assert experience.diff().dropna().eq(1).all().all()  # a month more at each monthly snapshot


def test_the_logged_contacts_are_drawn_from_the_oracle(world: dict[str, pd.DataFrame], world_dir: Path) -> None:
    contacts = pq.read_table(world_dir / "contacts.parquet")
    rows = contacts.rename_columns(
        [f"contact_{c}" if c in ("intent", "channel", "language") else c for c in contacts.column_names]
    )
    pair = oracle_inputs(world_dir, rows)
    frame = world["contacts"]
    p = true_resolution_probability(*pair)
    assert abs(frame["resolved"].mean() - p.mean()) < 0.01
    # Resolution follows the truth across its range: a decile of the oracle's P is resolved at about that rate.
    decile = pd.qcut(p, 10, labels=False)
    by_decile = frame.groupby(decile)["resolved"].mean()
    np.testing.assert_allclose(by_decile, pd.Series(p).groupby(decile).mean(), atol=0.05)
    assert frame["handle_time_s"].mean() == pytest.approx(true_handle_time(*pair).mean(), rel=0.03)
    csat = true_csat(*pair)
    assert csat.min() > 1
    assert csat.max() < 5


def test_the_oracle_by_hand() -> None:
    # A billing contact by voice from a customer with an open complaint in a bad mood (-0.5), not a repeat,
    # and an agent holding the skill and the language, latent skill 0.3, 18 months in the job.
    contacts = {
        "intent": np.array(["billing"]),
        "channel": np.array(["voice"]),
        "language": np.array(["en"]),
        "repeat": np.array([False]),
        "complaint": np.array([True]),
        "mood": np.array([-0.5]),
    }
    agents = {
        **{f"skill_{s}": np.array([s == "billing"]) for s in ("billing", "technical", "retention", "sales")},
        **{f"speaks_{lang}": np.array([lang == "en"]) for lang in ("en", "es", "fr")},
        **{f"talent_{s}": np.array([0.3]) for s in ("billing", "technical", "retention", "sales")},
        "experience_months": np.array([18]),
    }
    # difficulty 0.8 + 0.8 * 0.5 = 1.2, softened by 0.7 * 18 / 36 = 35%; seasoning 1 - exp(-1)
    logit = 0.3 + 2.0 * (1 - np.exp(-1.0)) - 1.0 - 1.2 * 0.65
    p = 1 / (1 + np.exp(-logit))
    assert true_resolution_probability(contacts, agents)[0] == pytest.approx(p)
    transfer = 1 / (1 + np.exp(2.6))
    slower = 420.0 * np.exp(-0.3 * (1 - np.exp(-1.0))) * 1.3 * np.exp(0.08)
    assert true_handle_time(contacts, agents)[0] == pytest.approx(slower * (p + 1.3 * (1 - p)) * (1 + 0.4 * transfer))
    # Without the language the same pair resolves far less often.
    foreign = {**contacts, "language": np.array(["fr"])}
    assert true_resolution_probability(foreign, agents)[0] == pytest.approx(1 / (1 + np.exp(-(logit - 2.0))))


def test_usage_declines_before_churn(observed: pd.DataFrame, world: dict[str, pd.DataFrame]) -> None:
    labels = world["churn_labels"]
    frame = observed.merge(labels, on=["customer_id", "ts"])
    assert (frame["usage_7d"] <= frame["usage_30d"]).all()
    assert frame["usage_30d"].gt(0).mean() > 0.99
    churners = frame.loc[frame["churned"] == 1, "customer_id"]
    rows = frame[frame["customer_id"].isin(churners)].sort_values("ts")
    last, earlier = rows.groupby("customer_id").nth(-1), rows.groupby("customer_id").nth(-3)
    both = last.set_index("customer_id")["usage_30d"].align(earlier.set_index("customer_id")["usage_30d"], join="inner")
    assert (both[0] < both[1]).mean() > 0.6  # most churners use less in their last month than two months before
    assert (
        frame.loc[frame["churned"] == 1, "usage_30d"].mean()
        < 0.9 * frame.loc[frame["churned"] == 0, "usage_30d"].mean()
    )


def test_carts_are_left_by_some_and_consents_change_rarely(world: dict[str, pd.DataFrame]) -> None:
    events, snaps = world["customer_events"], world["customer_snapshots"]
    months = snaps.groupby("feature_ts")["customer_id"].count().mean() * 9  # with the three warm-up months
    carts = events[events["type"] == "cart_abandoned"]
    assert 0.03 < len(carts) / months < 0.1
    assert (carts["cart_value"] > 0).all()
    consents = events[events["type"] == "consent_changed"]
    first = consents["occurred_at"].min()
    initial, changes = consents[consents["occurred_at"] == first], consents[consents["occurred_at"] > first]
    # The consent platform's first record: every customer, every purpose, once, before anything else happens.
    assert len(initial) == 4 * snaps["customer_id"].nunique()
    assert (initial.groupby("customer_id")["purpose"].nunique() == 4).all()
    assert first < events.loc[events["type"] != "consent_changed", "occurred_at"].min()
    assert 0.5 < initial.loc[initial["purpose"] == "marketing", "granted"].mean() < 0.9
    # Then changes are rare, in every purpose.
    assert 0 < len(changes) / months < 0.05
    assert set(changes["purpose"]) == {"marketing", "profiling", "phone", "sms"}
    assert "consent_marketing" not in snaps.columns, "consent comes from events, not from the CRM snapshot"


def test_offer_events_follow_their_decision(world: dict[str, pd.DataFrame]) -> None:
    offers, events = world["offers"], world["customer_events"]
    made = offers[offers["action_id"] != "no_action"]
    end = pd.Timestamp(END, tz="UTC")
    for kind, keep in (("offer_presented", made), ("offer_accepted", made[made["accepted"] == 1])):
        ev = events[events["type"] == kind]
        joined = keep.merge(ev, on=["customer_id", "action_id"])
        # Match each decision with its own offer event: the first one after it.
        joined = joined[joined["occurred_at"] > joined["ts"]]
        own = joined.sort_values("occurred_at").groupby("decision_id").first()
        written = keep[keep["ts"] < end]
        assert set(own.index) == set(written["decision_id"]), kind
        assert (own["occurred_at"] > own["ts"]).all()
        assert (own["occurred_at"] - own["ts"] < pd.Timedelta(minutes=15)).all()
    declined = events[events["type"] == "offer_declined"]
    assert len(declined) > 0
    # No offer event falls between a snapshot and its decision: a decision never sees its own offer.
    offer_events = events[events["type"].str.startswith("offer_")]
    label_days = set(pd.to_datetime(offers["ts"]).dt.normalize())
    assert set(offer_events["occurred_at"].dt.normalize()) <= label_days | {
        t - pd.Timedelta(days=30 * k) for t in label_days for k in (1, 2, 3)
    }


def test_labels_and_offers_agree(world: dict[str, pd.DataFrame]) -> None:
    snaps, labels, offers = world["customer_snapshots"], world["churn_labels"], world["offers"]
    assert len(labels) == len(snaps)
    assert (labels["ts"].to_numpy() == (snaps["feature_ts"] + pd.Timedelta(days=1)).to_numpy()).all()
    joined = offers.merge(labels, on=["customer_id", "ts"], suffixes=("", "_label"), validate="one_to_one")
    assert len(joined) == len(offers)
    assert (joined["churned"] == joined["churned_label"]).all()
    assert 0.3 < len(offers) / len(snaps) < 0.5
    assert offers["decision_id"].is_unique
    assert (offers.loc[offers["action_id"] == "no_action", "accepted"] == 0).all()
    # Churned customers never come back.
    last = labels[labels["churned"] == 1].groupby("customer_id")["ts"].max()
    later = snaps.merge(last.rename("gone"), on="customer_id")
    assert (later["feature_ts"] < later["gone"]).all()


def test_propensities_match_the_behaviour_policy(observed: pd.DataFrame, world: dict[str, pd.DataFrame]) -> None:
    # The policy was evaluated on the features the simulation computed; recomputing them from the written
    # events with event_features_at must give the same propensities, so the two computations agree.
    offers = world["offers"]
    assert offers["propensity"].between(0.03, 1.0).all()
    rows = observed.merge(offers, on=["customer_id", "ts"])
    probs = behaviour_probabilities(_columns(rows))
    assert np.allclose(probs.sum(axis=1), 1.0)
    chosen = probs[np.arange(len(rows)), [ACTIONS.index(a) for a in rows["action_id"]]]
    assert np.allclose(chosen, rows["propensity"].to_numpy())


def test_event_features_look_like_the_latent_world(observed: pd.DataFrame) -> None:
    assert observed["logins_30d"].mean() > 5
    assert (observed["logins_7d"] <= observed["logins_30d"]).all()
    assert (observed["contacts_7d"] <= observed["contacts_30d"]).all()
    assert (observed["contacts_30d"] <= observed["contacts_90d"]).all()
    assert (observed["repeat_contacts_30d"] < observed["contacts_30d"].clip(lower=1)).all()
    assert observed["days_since_last_activity"].between(1, 90).mean() > 0.95
    assert observed["failed_payments_90d"].between(0, 3).all()
    assert observed["last_sentiment"].notna().mean() > 0.3
    assert observed["last_sentiment"].dropna().between(-1, 1).all()
    assert 0.02 < observed["open_complaint"].fillna(0).mean() < 0.3
    first = observed["feature_ts"] == observed["feature_ts"].min()
    assert observed.loc[first, "offers_declined_90d"].sum() > 0
    assert observed.loc[~first, "offers_accepted_90d"].sum() > 0
    assert observed["days_since_last_offer"].dropna().isin([29, 59, 89, 119, 149, 179]).all()


def test_churn_rates_and_monotone_ground_truth(observed: pd.DataFrame, world: dict[str, pd.DataFrame]) -> None:
    labels = world["churn_labels"]
    rate = labels["churned"].mean()
    assert 0.03 <= rate <= 0.08
    complaint = observed["open_complaint"].fillna(0).to_numpy() == 1
    churned = labels["churned"].to_numpy()
    assert churned[complaint].mean() > 1.5 * churned[~complaint].mean()
    c = _columns(observed)
    p = true_churn_probability(c)
    assert np.isfinite(p).all()
    assert p[complaint].mean() > p[~complaint].mean()
    assert abs(p.mean() - rate) < 0.01
    tenure = observed["tenure_months"].to_numpy()
    assert p[tenure > 48].mean() < p[tenure < 12].mean()
    transfers = observed["transfers_30d"].to_numpy()
    assert p[transfers > 0].mean() > p[transfers == 0].mean()


def test_missing_event_features_are_neutral(observed: pd.DataFrame) -> None:
    c = _columns(observed.head(200))
    unknown = dict(c, last_sentiment=np.full(200, np.nan), sentiment_mean_30d=np.full(200, np.nan))
    zero = dict(c, last_sentiment=np.zeros(200), sentiment_mean_30d=np.zeros(200))
    np.testing.assert_allclose(true_churn_probability(unknown), true_churn_probability(zero))
    for action in ACTIONS:
        assert np.isfinite(true_accept_probability(unknown, action)).all()
    no_offer = dict(c, days_since_last_offer=np.full(200, np.nan), offers_accepted_90d=np.zeros(200))
    fatigued = dict(no_offer, days_since_last_offer=np.full(200, 29.0))
    accepted = dict(no_offer, offers_accepted_90d=np.ones(200))
    offered = true_accept_probability(no_offer, "discount_10")
    assert (true_accept_probability(fatigued, "discount_10") <= offered).all()
    assert (true_accept_probability(accepted, "discount_10") <= offered).all()
    assert (true_accept_probability(accepted, "discount_10") < offered).any()


def test_risk_ranking_is_not_the_best_policy(observed: pd.DataFrame) -> None:
    c = _columns(observed[observed["feature_ts"] == observed["feature_ts"].max()])
    risk = true_churn_probability(c)
    value = np.stack([true_expected_value(c, a) for a in ACTIONS], axis=1)
    best = value.argmax(axis=1)
    top = risk >= np.quantile(risk, 0.8)
    premium = c["segment"] == "premium"
    # Premium customers are put off by retention offers: their churn rises even at high risk.
    assert (true_churn_probability(c, "retention_offer")[premium & top] > risk[premium & top]).all()
    # Some of the riskiest customers are best left alone...
    assert (best[top] == ACTIONS.index("no_action")).sum() > 0
    # ...so the oracle beats "retention offer to the riskiest 20%, nothing to the rest".
    by_risk = np.where(top, ACTIONS.index("retention_offer"), ACTIONS.index("no_action"))
    rows = np.arange(len(risk))
    assert value[rows, best].sum() > value[rows, by_risk].sum() * 1.005
    assert len(set(best.tolist())) >= 4


def _event_table(rows: list[dict[str, object]]) -> pa.Table:
    reg = Registry.load()
    arrow = {"category": pa.string(), "str": pa.string(), "bool": pa.bool_(), "float": pa.float64(), "int": pa.int64()}
    schema = pa.schema(
        [
            ("event_id", pa.string()),
            ("customer_id", pa.string()),
            ("occurred_at", pa.timestamp("us", tz="UTC")),
            ("type", pa.string()),
            *((name, arrow[dtype]) for name, dtype in reg.event_columns("customer").items()),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def _at(day: int, hour: int = 0, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime(2024, 3, day, hour, minute, second, tzinfo=UTC)


def test_event_features_at_by_hand() -> None:
    reg = Registry.load()
    t = _at(20, 12)  # the 7-day window at T holds March 14..20, up to 12:00 on the 20th
    rows: list[dict[str, object]] = [
        # C1: logins at the window's edges and after T.
        {"event_id": "e01", "customer_id": "C1", "occurred_at": _at(14, 0, 0, 0), "type": "login"},
        {"event_id": "e02", "customer_id": "C1", "occurred_at": _at(14, 23, 59, 59), "type": "login"},
        {"event_id": "e03", "customer_id": "C1", "occurred_at": _at(13, 23, 59, 59), "type": "login"},
        {"event_id": "e04", "customer_id": "C1", "occurred_at": _at(20, 12), "type": "login"},
        {"event_id": "e05", "customer_id": "C1", "occurred_at": _at(20, 12, 0, 1), "type": "login"},
        # C1: contacts; the where-filters and the 30-day window (Feb 20..Mar 20 in a leap year).
        *(
            {
                "event_id": f"c{i}",
                "customer_id": "C1",
                "occurred_at": when,
                "type": "contact_ended",
                "intent": "billing",
                "resolved": False,
                "transferred": transferred,
                "repeat": repeat,
                "handle_time_s": 300.0,
            }
            for i, (when, transferred, repeat) in enumerate(
                [
                    (_at(19), True, False),
                    (_at(10), False, True),
                    (dt.datetime(2024, 2, 20, 0, 0, 0, tzinfo=UTC), True, True),
                    (dt.datetime(2024, 2, 19, 23, 59, 59, tzinfo=UTC), True, True),
                ]
            )
        ),
        # C1: complaint opened then closed at the same moment: the larger event id (closed) wins.
        {"event_id": "k2", "customer_id": "C1", "occurred_at": _at(5), "type": "complaint", "open": True},
        {"event_id": "k3", "customer_id": "C1", "occurred_at": _at(5), "type": "complaint", "open": False},
        # C1: sentiment, one in the 30-day window and a newer one after T.
        {"event_id": "s1", "customer_id": "C1", "occurred_at": _at(1), "type": "sentiment", "score": -0.5},
        {"event_id": "s2", "customer_id": "C1", "occurred_at": _at(2), "type": "sentiment", "score": 0.1},
        {"event_id": "s3", "customer_id": "C1", "occurred_at": _at(21), "type": "sentiment", "score": 0.9},
        # C1: usage inside and outside the 7-day window and after T; surveys, the newer without an NPS; a cart.
        {"event_id": "u1", "customer_id": "C1", "occurred_at": _at(14), "type": "usage", "units": 10.0},
        {"event_id": "u2", "customer_id": "C1", "occurred_at": _at(13, 23, 59, 59), "type": "usage", "units": 5.0},
        {"event_id": "u3", "customer_id": "C1", "occurred_at": _at(20, 12, 0, 1), "type": "usage", "units": 100.0},
        {"event_id": "q1", "customer_id": "C1", "occurred_at": _at(3), "type": "survey_answered", "csat": 5, "nps": 9},
        {"event_id": "q2", "customer_id": "C1", "occurred_at": _at(18), "type": "survey_answered", "csat": 2},
        {
            "event_id": "b1",
            "customer_id": "C1",
            "occurred_at": _at(15, 6),
            "type": "cart_abandoned",
            "cart_value": 80.0,
        },
        # C2: only old events: sentiment 91 days before T (past the 90-day TTL), an open complaint 90 days
        # before T to the second (still within it), a login 3.5 days before T, an offer within 180 days.
        {
            "event_id": "x1",
            "customer_id": "C2",
            "occurred_at": t - dt.timedelta(days=91),
            "type": "sentiment",
            "score": 0.7,
        },
        {
            "event_id": "x2",
            "customer_id": "C2",
            "occurred_at": t - dt.timedelta(days=90),
            "type": "complaint",
            "open": True,
        },
        {"event_id": "x3", "customer_id": "C2", "occurred_at": t - dt.timedelta(days=3, hours=12), "type": "login"},
        {  # a cart 31 days old: past the cart view's 30-day TTL
            "event_id": "x4",
            "customer_id": "C2",
            "occurred_at": t - dt.timedelta(days=31),
            "type": "cart_abandoned",
            "cart_value": 55.0,
        },
        *(
            {"event_id": f"o{i}", "customer_id": "C2", "occurred_at": when, "type": kind, "action_id": "discount_10"}
            for i, (when, kind) in enumerate(
                [
                    (t - dt.timedelta(days=100), "offer_presented"),
                    (t - dt.timedelta(days=100) + dt.timedelta(minutes=3), "offer_accepted"),
                    (t - dt.timedelta(days=40), "offer_presented"),
                    (t - dt.timedelta(days=40) + dt.timedelta(minutes=3), "offer_declined"),
                ]
            )
        ),
    ]
    f = event_features_at(_event_table(rows), reg, ["C1", "C2", "C3", "C1"], np.array([t, t, t, _at(20, 12, 0, 1)]))
    assert set(f) == {feature.name for feature in reg.entity("customer").event_features}
    assert f["logins_7d"].tolist() == [3, 1, 0, 4]  # e01, e02, e04 (e03 a day too early, e05 after T)
    assert f["logins_30d"].tolist() == [4, 1, 0, 5]
    np.testing.assert_array_equal(f["days_since_last_activity"], [0.0, 3.0, np.nan, 0.0])
    assert f["contacts_7d"].tolist() == [1, 0, 0, 1]
    assert f["contacts_30d"].tolist() == [3, 0, 0, 3]  # Feb 20 00:00 is on the window's first day
    assert f["contacts_90d"].tolist() == [4, 0, 0, 4]
    assert f["repeat_contacts_30d"].tolist() == [2, 0, 0, 2]
    assert f["transfers_30d"].tolist() == [2, 0, 0, 2]
    np.testing.assert_array_equal(f["open_complaint"], [0.0, 1.0, np.nan, 0.0])
    assert f["last_sentiment"][0] == pytest.approx(0.1)
    assert np.isnan(f["last_sentiment"][1:3]).all()
    assert f["sentiment_mean_30d"][0] == pytest.approx(-0.2)
    assert np.isnan(f["sentiment_mean_30d"][1:3]).all()
    assert f["offers_declined_90d"].tolist() == [0, 1, 0, 0]
    assert f["offers_accepted_90d"].tolist() == [0, 0, 0, 0]  # accepted 100 days ago: outside 90 days
    np.testing.assert_array_equal(f["days_since_last_offer"], [np.nan, 40.0, np.nan, np.nan])
    assert f["failed_payments_90d"].tolist() == [0, 0, 0, 0]
    assert f["usage_7d"].tolist() == [10.0, 0.0, 0.0, 110.0]
    assert f["usage_30d"].tolist() == [15.0, 0.0, 0.0, 115.0]
    assert f["last_contact_reason"].tolist() == ["billing", None, None, "billing"]
    assert f["last_offer"].tolist() == [None, "discount_10", None, None]
    np.testing.assert_array_equal(f["last_csat"], [2.0, np.nan, np.nan, 2.0])
    np.testing.assert_array_equal(f["csat_mean_90d"], [3.5, np.nan, np.nan, 3.5])
    np.testing.assert_array_equal(f["last_nps"], [np.nan, np.nan, np.nan, np.nan])  # the last survey did not ask
    np.testing.assert_array_equal(f["abandoned_cart_value"], [80.0, np.nan, np.nan, 80.0])
    np.testing.assert_array_equal(f["days_since_abandoned_cart"], [5.0, np.nan, np.nan, 5.0])
    # One moment for all ids gives the same as that moment per id.
    g = event_features_at(_event_table(rows), reg, np.array(["C1", "C2"]), t)
    for name, values in g.items():
        np.testing.assert_array_equal(values, f[name][:2])


def test_event_features_at_on_an_empty_table() -> None:
    reg = Registry.load()
    f = event_features_at(_event_table([]), reg, ["C1"], _at(1))
    assert f["logins_30d"].tolist() == [0]
    assert np.isnan(f["last_sentiment"]).all()
    assert np.isnan(f["days_since_last_activity"]).all()


def test_config_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="customers"):
        WorldConfig(customers=10, end=END)
    with pytest.raises(ValueError, match="agents"):
        WorldConfig(agents=1, end=END)
    with pytest.raises(ValueError, match="months"):
        WorldConfig(months=40, end=END)
