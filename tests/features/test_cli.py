"""``nba features ...`` as a user runs it: the contract printed from the registry, and materialization into
the test Redis from the test world, all through click's runner."""

from __future__ import annotations

import json
import struct
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner, Result

from features import EventLayout, OfflineStore, Registry
from service.cli import main
from tests.conftest import own_world

WIDE = {"COLUMNS": "250"}  # rich sizes tables to the terminal; a wide one keeps every cell on one line


def _nba(*args: str, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(main, ["features", *args], env={**WIDE, **(env or {})})


def _row(output: str, name: str) -> list[str]:
    """The cells of the table row whose name column is ``name``."""
    line = next(line for line in output.splitlines() if f" {name} " in line)
    return [cell.strip() for cell in line.strip("│ ").split("│")]


@pytest.mark.parametrize(
    "args",
    [[], ["list"], ["describe"], ["materialize"], ["check"], ["erase"]],
    ids=["features", "list", "describe", "materialize", "check", "erase"],
)
def test_every_features_command_has_help(args: list[str]) -> None:
    result = _nba(*args, "--help")
    assert result.exit_code == 0
    assert "Usage: " in result.output


def test_list_prints_every_feature_of_the_contract(registry: Registry) -> None:
    result = _nba("list")
    assert result.exit_code == 0, result.output
    first = result.output.splitlines()[0]
    total = sum(len(v.features) for v in registry.views.values())
    assert first == f"feature contract {registry.version}: {total} features in {len(registry.views)} views"
    assert _row(result.output, "tenure_months") == [
        "customer_profile",
        "tenure_months",
        "int",
        "0",
        "45 d",
        "no",
        "crm",
        "-",
        "months as a customer",
    ]
    assert _row(result.output, "last_sentiment")[3] == "-"  # no default
    assert _row(result.output, "days_to_contract_end")[7] == "days_until(contract_end_day)"
    for view in registry.views.values():
        for feature in view.features:
            assert _row(result.output, feature.name)[:3] == [view.name, feature.name, feature.dtype]


def test_list_for_one_entity_leaves_the_others_out(registry: Registry) -> None:
    result = _nba("list", "--entity", "agent")
    assert result.exit_code == 0, result.output
    agent = registry.entity("agent")
    assert f": {len(agent.names)} features in {len(agent.views)} views" in result.output.splitlines()[0]
    assert all(_row(result.output, name) for name in agent.names)
    assert "tenure_months" not in result.output


def test_list_rejects_an_unknown_entity_naming_the_option() -> None:
    result = _nba("list", "--entity", "supplier")
    assert result.exit_code != 0
    assert "--entity" in result.output


def test_describe_a_feature_shows_all_its_fields_and_its_view() -> None:
    result = _nba("describe", "plan")
    assert result.exit_code == 0, result.output
    fields = {line[:19].strip(): line[19:].strip() for line in result.output.splitlines() if line.strip()}
    assert fields == {
        "feature": "plan",
        "dtype": "category",
        "default": "-",
        "categories": "basic, standard, premium",
        "pii": "no",
        "derived from": "-",
        "model input": "yes",
        "description": "plan",
        "reason": "on the {value} plan",
        "reason (negative)": "-",
        "view": "customer_profile",
        "view entity": "customer",
        "view TTL": "45 d",
        "view owner": "crm",
        "view description": "Who the customer is and what they pay; refreshed by the monthly CRM snapshot.",
    }


def test_describe_says_a_stored_date_is_no_model_input() -> None:
    result = _nba("describe", "contract_end_day")
    assert result.exit_code == 0, result.output
    assert "model input        no (read and derived from, never scored)" in result.output


def test_describe_a_view_shows_the_view_then_each_feature() -> None:
    result = _nba("describe", "customer_contacts")
    assert result.exit_code == 0, result.output
    lines = [" ".join(line.split()) for line in result.output.splitlines()]
    assert lines[:6] == [
        "view customer_contacts",
        "entity customer",
        "TTL 90 d",
        "owner contact-center",
        "description The customer's contacts with the contact center, counted from contact events.",
        "features 7",
    ]
    assert [line.removeprefix("feature ") for line in lines if line.startswith("feature ")] == [
        "contacts_7d",
        "contacts_30d",
        "contacts_90d",
        "repeat_contacts_30d",
        "transfers_30d",
        "open_complaint",
        "last_contact_reason",
    ]
    assert "reason {value:.0f} repeat contacts in 30 days" in lines


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("tenure_month", "did you mean 'tenure_months' or 'experience_months'?"),
        ("customer_profil", "did you mean 'customer_profile' or 'customer_offers' or 'customer_cart'?"),
        ("xyzzy", "see `nba features list`"),
    ],
    ids=["feature-typo", "view-typo", "nothing-close"],
)
def test_describe_an_unknown_name_says_so_with_close_matches(name: str, hint: str) -> None:
    result = _nba("describe", name)
    assert result.exit_code == 1
    assert result.output == f"Error: no feature or view named {name!r} in the feature contract: {hint}\n"


def _env(world: Path, redis_url: str) -> dict[str, str | None]:
    """The test Redis and the test world's data dir; nothing of the caller's store settings leaks in."""
    return {"REDIS_URL": redis_url, "NBA_DATA_DIR": str(world.parent), "NBA_REDIS_URL": None}


def _ids(client: redis.Redis, entity: str) -> set[str]:
    """Ids of the entities with a packed snapshot in the store."""
    return {k.decode().split("{", 1)[1].rstrip("}") for k in client.scan_iter(match=f"nba:{entity}:*", count=1000)}


def _state_ids(client: redis.Redis, entity: str, *, seen: str | None = None) -> set[str]:
    """Ids of the entities with event state; only those whose state holds an event of type ``seen`` when given."""
    keys = [k.decode() for k in client.scan_iter(match=f"nba:events:{entity}:*", count=1000)]
    if seen is not None:
        layout = EventLayout(Registry.load().entity(entity))
        at = layout.offset(layout.group(seen).slot)
        keys = [k for k in keys if struct.unpack("<d", client.getrange(k, at, at + 7))[0] > 0]  # type: ignore[arg-type]
    return {k.split("{", 1)[1].rstrip("}") for k in keys}


def test_materialize_writes_every_entity_and_is_idempotent(
    world: Path, redis_url: str, redis_client: redis.Redis, offline: OfflineStore
) -> None:
    customers = offline.latest("customer")
    agents = offline.latest("agent")
    result = _nba("materialize", env=_env(world, redis_url))
    assert result.exit_code == 0, result.output
    assert f"customer: {customers.num_rows:,} entities written in " in result.output
    assert f"agent: {agents.num_rows:,} entities written in " in result.output
    assert "entities/s" in result.output
    assert _ids(redis_client, "customer") == set(customers.column("customer_id").to_pylist())
    assert _ids(redis_client, "agent") == set(agents.column("agent_id").to_pylist())

    first = redis_client.get("nba:customer:{C000042}")
    state = redis_client.get("nba:events:customer:{C000042}")
    assert first
    assert state
    again = _nba("materialize", "--entity", "customer", env=_env(world, redis_url))
    assert again.exit_code == 0, again.output
    assert redis_client.get("nba:customer:{C000042}") == first
    assert redis_client.get("nba:events:customer:{C000042}") == state
    assert _ids(redis_client, "customer") == set(customers.column("customer_id").to_pylist())


def test_materialize_since_writes_only_entities_observed_since(
    world: Path, redis_url: str, redis_client: redis.Redis, offline: OfflineStore
) -> None:
    rows = offline.latest("customer").to_pylist()
    stamps = sorted({r["feature_ts"] for r in rows})
    assert len(stamps) > 2, "the test world should have customers last seen at different times"
    since: datetime = stamps[-2]
    expected = {r["customer_id"] for r in rows if r["feature_ts"] >= since}
    assert 0 < len(expected) < len(rows)

    result = _nba(
        "materialize", "--entity", "customer", "--since", since.strftime("%Y-%m-%d"), env=_env(world, redis_url)
    )
    assert result.exit_code == 0, result.output
    assert f"customer: {len(expected):,} entities written" in result.output
    assert "agent:" not in result.output
    # --since cuts the snapshots; event state is recomputed whole (windows slide with the clock).
    assert _ids(redis_client, "customer") == expected
    with_events = _state_ids(redis_client, "customer", seen="login")
    assert with_events - expected
    assert _ids(redis_client, "agent") == set()


def test_materialize_since_the_future_writes_nothing(world: Path, redis_url: str, redis_client: redis.Redis) -> None:
    tomorrow = (datetime.now().astimezone() + timedelta(days=1)).isoformat()
    result = _nba("materialize", "--since", tomorrow, env=_env(world, redis_url))
    assert result.exit_code == 0, result.output
    assert "customer: 0 entities written" in result.output
    assert "agent: 0 entities written" in result.output
    # No snapshot was due; only the event state (always recomputed whole) was written.
    assert _ids(redis_client, "agent") == set()
    assert _ids(redis_client, "customer") == set()
    assert _state_ids(redis_client, "customer")


@pytest.mark.parametrize("since", ["yesterday", "2026-13-01", "01/11/2026"], ids=["word", "month-13", "not-iso"])
def test_materialize_rejects_a_bad_since_naming_it(
    since: str, world: Path, redis_url: str, redis_client: redis.Redis
) -> None:
    result = _nba("materialize", "--since", since, env=_env(world, redis_url))
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: --since: {since!r} is not an ISO-8601 date or time")
    assert redis_client.dbsize() == 0


def test_materialize_without_a_world_says_where_it_looked(tmp_path: Path, redis_url: str) -> None:
    result = _nba("materialize", env={"REDIS_URL": redis_url, "NBA_DATA_DIR": str(tmp_path), "NBA_REDIS_URL": None})
    assert result.exit_code == 1
    assert "customer_snapshots.parquet: no snapshot table for entity 'customer'" in result.output


def test_check_prints_every_feature_and_fails_past_the_thresholds(
    world: Path, redis_url: str, materialized: None, registry: Registry, tmp_path: Path
) -> None:
    metrics = tmp_path / "nba.prom"
    env = _env(world, redis_url)
    lenient = _nba(
        "check", "--sample", "300", "--max-psi", "100", "--max-stale", "1", "--metrics-file", str(metrics), env=env
    )
    assert lenient.exit_code == 0, lenient.output
    assert lenient.output.startswith("300 customers sampled from the online store; reference: point-in-time frame of")
    for feature in registry.entity("customer").features:
        assert f" {feature.name} " in lenient.output
    assert "FAIL" not in lenient.output
    assert 'nba_feature_check_sampled{entity="customer"} 300.0' in metrics.read_text()

    strict = _nba("check", "--sample", "300", "--max-psi", "0.000001", "--max-stale", "0", env=env)
    assert strict.exit_code == 3
    fails = [line for line in strict.output.splitlines() if line.startswith("FAIL ")]
    assert any(": PSI " in line for line in fails)
    assert any("stale > 0.0%" in line for line in fails)


def test_check_as_json_carries_every_figure(
    world: Path, redis_url: str, materialized: None, offline: OfflineStore
) -> None:
    result = _nba("check", "--sample", "0", "--format", "json", "--no-reference", env=_env(world, redis_url))
    assert result.exit_code in (0, 3), result.output
    body = json.loads(result.output)
    assert body["sampled"] == offline.latest("customer").num_rows
    assert body["reference"] is None
    first = body["features"][0]
    assert set(first) == {"name", "view", "missing", "stale", "out_of_range", "psi", "status"}
    assert {f["status"] for f in body["features"]} == {"no reference"}
    assert (result.exit_code == 3) == bool(body["problems"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--reference", "nowhere.parquet"], "nowhere.parquet: cannot read a label table with columns customer_id, ts"),
        (["--reference", "x.parquet", "--no-reference"], "--reference and --no-reference exclude each other"),
    ],
    ids=["missing-reference", "both"],
)
def test_check_rejects_a_bad_reference_naming_it(
    world: Path, redis_url: str, redis_client: redis.Redis, args: list[str], message: str
) -> None:
    result = _nba("check", *args, env=_env(world, redis_url))
    assert result.exit_code == 1
    assert message in result.output


def test_check_on_an_empty_store_says_to_materialize(world: Path, redis_url: str, redis_client: redis.Redis) -> None:
    result = _nba("check", "--no-reference", env=_env(world, redis_url))
    assert result.exit_code == 1
    assert "the online store holds no customer to check: run `nba features materialize` first" in result.output


def test_erase_then_materialize_leaves_the_customer_out(
    tmp_path: Path, world: Path, redis_url: str, redis_client: redis.Redis, materialized: None, registry: Registry
) -> None:
    own = own_world(tmp_path, world)
    env = _env(own, redis_url)
    first = _nba("erase", "C000042", env=env)
    assert first.exit_code == 0, first.output
    assert first.output.splitlines() == [
        f"offline: added to the erasure ledger {own / 'erasures.parquet'}",
        "online: state deleted",
    ]
    assert "C000042" not in first.output
    again = _nba("erase", "C000042", env=env)
    assert again.output.splitlines()[0].startswith("offline: already in the erasure ledger")
    assert again.output.splitlines()[1] == "online: nothing was stored"
    assert OfflineStore(own, registry).erasures.ids("customer") == {"C000042"}

    assert _nba("materialize", "--entity", "customer", env=env).exit_code == 0
    assert redis_client.exists("nba:customer:{C000042}") == 0
    assert redis_client.exists("nba:customer:{C000043}") == 1


@pytest.mark.parametrize(
    "customer_id", ["C 42", "", ".C1", "C" * 65], ids=["space", "empty", "leading-dot", "too-long"]
)
def test_erase_rejects_a_malformed_id_without_echoing_it(
    tmp_path: Path, world: Path, redis_url: str, customer_id: str
) -> None:
    own = own_world(tmp_path, world)
    result = _nba("erase", customer_id, env=_env(own, redis_url))
    assert result.exit_code == 1
    assert result.output == "Error: CUSTOMER_ID: not a customer id (letters, digits and _.:@+- up to 64 characters)\n"
    assert not (own / "erasures.parquet").exists()
