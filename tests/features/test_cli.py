"""``nba features ...`` as a user runs it: the contract printed from the registry, and materialization into
the test Redis from the test world, all through click's runner."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner, Result

from features import OfflineStore, Registry
from service.cli import main

WIDE = {"COLUMNS": "250"}  # rich sizes tables to the terminal; a wide one keeps every cell on one line


def _nba(*args: str, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(main, ["features", *args], env={**WIDE, **(env or {})})


def _row(output: str, name: str) -> list[str]:
    """The cells of the table row whose name column is ``name``."""
    line = next(line for line in output.splitlines() if f" {name} " in line)
    return [cell.strip() for cell in line.strip("│ ").split("│")]


@pytest.mark.parametrize(
    "args", [[], ["list"], ["describe"], ["materialize"]], ids=["features", "list", "describe", "materialize"]
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
        "months as a customer",
    ]
    assert _row(result.output, "last_sentiment")[3] == "-"  # no default
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
        "description": "plan",
        "reason": "on the {value} plan",
        "reason (negative)": "-",
        "view": "customer_profile",
        "view entity": "customer",
        "view TTL": "45 d",
        "view owner": "crm",
        "view description": "Who the customer is, what they pay and consent to; refreshed by the monthly CRM snapshot.",
    }


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
        ("tenure_month", "did you mean 'tenure_months'?"),
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


def _ids(
    client: redis.Redis, entity: str, *, with_field: str | None = None, with_prefix: str | None = None
) -> set[str]:
    """Ids of the entity's hashes; only those holding ``with_field`` or a field starting ``with_prefix``."""
    keys = [k.decode() for k in client.scan_iter(match=f"nba:{entity}:*", count=1000)]
    if with_field is not None or with_prefix is not None:
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.hkeys(key)
        fields = [{f.decode() for f in reply} for reply in pipe.execute()]
        keys = [
            k
            for k, names in zip(keys, fields, strict=True)
            if (with_field is None or with_field in names)
            and (with_prefix is None or any(n.startswith(with_prefix) for n in names))
        ]
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

    first = redis_client.hgetall("nba:customer:{C000042}")
    again = _nba("materialize", "--entity", "customer", env=_env(world, redis_url))
    assert again.exit_code == 0, again.output
    assert redis_client.hgetall("nba:customer:{C000042}") == first
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
    assert _ids(redis_client, "customer", with_field="_ts:customer_profile") == expected
    with_events = _ids(redis_client, "customer", with_field="last|login")
    assert with_events - expected
    assert _ids(redis_client, "customer") == expected | _ids(redis_client, "customer", with_prefix="last|")
    assert _ids(redis_client, "agent") == set()


def test_materialize_since_the_future_writes_nothing(world: Path, redis_url: str, redis_client: redis.Redis) -> None:
    tomorrow = (datetime.now().astimezone() + timedelta(days=1)).isoformat()
    result = _nba("materialize", "--since", tomorrow, env=_env(world, redis_url))
    assert result.exit_code == 0, result.output
    assert "customer: 0 entities written" in result.output
    assert "agent: 0 entities written" in result.output
    # No snapshot was due; only the event state (always recomputed whole) was written.
    assert _ids(redis_client, "agent") == set()
    assert _ids(redis_client, "customer", with_prefix="_ts:") == set()
    assert _ids(redis_client, "customer") == _ids(redis_client, "customer", with_prefix="last|")


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
