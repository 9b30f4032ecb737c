"""schemathesis against the OpenAPI schema of every route: no 5xx, and every answer as the schema declares it.

A real service (uvicorn, the test world materialized in the session's Redis, the champion models) called with the
admin's key, which may call every route (the role table has its own test, ``test_auth.py``). For each operation,
schemathesis' coverage cases (each constraint's boundaries and each way to break it, valid and invalid) and
``EXAMPLES`` requests drawn from the schema's examples and from requests generated from it, valid and not; every
answer must pass the four checks below. Invalid requests check that bad input is a documented 4xx, never a 500;
valid ones reach the fast paths of recommend and assign as well as Litestar. README (Bad input) gives the ``st run``
line that does the same with more examples against ``make run``.

Through schemathesis' Python API rather than its pytest plugin: the plugin's lazy schema (the one a fixture can
serve) sets a private attribute pytest 9.2 no longer has.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from features import OfflineStore, Registry
from service.auth import ROUTE_ROLES
from service.keys import Role
from tests.conftest import materialize_world, own_world_settings, serve, session_keys

EXAMPLES = 20
"""Generated requests per operation, besides its coverage cases: the module takes about 25 s of the suite."""
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
MODES = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]


@dataclass
class Fuzzing:
    """The served schema, the headers every request carries, and how many requests each operation got."""

    schema: schemathesis.BaseSchema
    headers: dict[str, str]
    sent: dict[str, int] = field(default_factory=dict)

    def call(self, case: schemathesis.Case) -> None:
        """Send ``case`` with the key and hold its answer to the checks."""
        self.sent[case.operation.label] = self.sent.get(case.operation.label, 0) + 1
        case.call_and_validate(headers=self.headers, checks=CHECKS, timeout=10)


def fuzz_schema(base_url: str, examples: int) -> schemathesis.BaseSchema:
    """The schema the service at ``base_url`` serves, for schemathesis to generate ``examples`` requests per
    operation."""
    raw = httpx.get(f"{base_url}/schema/openapi.json", timeout=10).json()
    config = schemathesis.Config.from_dict({"base-url": base_url, "generation": {"max-examples": examples}})
    return schemathesis.openapi.from_dict(raw, config=config)


def key_headers(key: str) -> dict[str, str]:
    """The key in both headers the service reads, so a generated value of one cannot contradict the other."""
    return {"Authorization": f"Bearer {key}", "X-API-Key": key}


@pytest.fixture(scope="module")
def fuzzing(
    tmp_path_factory: pytest.TempPathFactory,
    world: Path,
    data_dir: Path,
    redis_url: str,
    registry: Registry,
    offline: OfflineStore,
    champions: dict[str, str],
) -> Iterator[Fuzzing]:
    """A service over a world of its own (the erasures it is sent land in its own ledger), its Redis materialized
    once for the module."""
    materialize_world(redis_url, registry, offline)
    own = own_world_settings(tmp_path_factory.mktemp("fuzz"), world, data_dir, redis_url)
    with serve(own) as served:
        fuzzing = Fuzzing(fuzz_schema(served.url, EXAMPLES), key_headers(session_keys().by_role[Role.ADMIN]))
        yield fuzzing
    print(f"schemathesis sent {sum(fuzzing.sent.values())} requests: {fuzzing.sent}")


@pytest.mark.parametrize("operation_id", sorted(ROUTE_ROLES))
def test_every_route_answers_as_its_schema_says(fuzzing: Fuzzing, operation_id: str) -> None:
    operation = fuzzing.schema.find_operation_by_id(operation_id)
    generation = fuzzing.schema.config.generation_for(operation=operation)
    for case in fuzzing.schema.iter_coverage_cases(operation, generation_modes=MODES, generation_config=generation):
        fuzzing.call(case)

    # The schema's own examples too (C000042, a customer of the test world): most generated ids name nobody, and
    # only an answer about somebody holds what its schema is about.
    strategies = [operation.as_strategy(generation_mode=mode) for mode in MODES]
    strategies += fuzzing.schema.get_strategies_from_examples(operation)

    @given(case=st.one_of(*strategies))
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def generated(case: schemathesis.Case) -> None:
        fuzzing.call(case)

    generated()
    assert fuzzing.sent[operation.label] > EXAMPLES


def test_the_schema_states_what_validation_checks(http: httpx.Client) -> None:
    """Litestar left out the id patterns, the cap on agent_ids and that no unknown key is taken: schemathesis' valid
    requests were then mostly refused, and a client read no cap. Every error a route answers is declared."""
    schema = http.get("/schema/openapi.json").json()
    schemas = schema["components"]["schemas"]
    agents = schemas["AssignRequest"]["properties"]["agent_ids"]
    assert (agents["oneOf"][0]["maxItems"], agents["oneOf"][0]["minItems"]) == (200, 1)
    assert "maxLength" not in agents  # Litestar put the list's length there, as a string's
    assert schemas["AssignRequest"]["properties"]["customer_id"]["pattern"] == r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,63}$"
    assert schemas["LoginEvent"]["properties"]["event_id"]["pattern"] == r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,63}$"
    assert schemas["EventBatch"]["properties"]["events"]["maxItems"] == 1_000
    assert all(schemas[name]["additionalProperties"] is False for name in ("RecommendRequest", "LoginEvent"))
    assert "additionalProperties" not in schemas["RecommendResponse"]  # answers may grow fields
    assert schemas["FeatureValueOut"]["properties"]["value"]["oneOf"] == [
        {"type": "boolean"},
        {"type": "number"},
        {"type": "string"},
        {"type": "null"},
    ]
    declared = {
        op["operationId"]: sorted(int(s) for s in op["responses"])
        for ops in schema["paths"].values()
        for op in ops.values()
    }
    assert declared["recommend"] == [200, 400, 401, 403, 413, 415, 422, 429]
    assert declared["ingest_events"] == [200, 400, 401, 403, 413, 415, 422, 429, 503]
    assert declared["customer_lookup"] == [200, 400, 401, 403, 404, 413, 415, 422, 429, 503]
    assert declared["erase_customer"] == [200, 400, 401, 403, 422, 429, 503]
    assert (declared["health"], declared["ready"]) == ([200], [200, 503])
