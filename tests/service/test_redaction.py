"""The access-log filter leaves no customer id in a ``/v1/customers/...`` path, whatever the id."""

from __future__ import annotations

import logging

from hypothesis import given
from hypothesis import strategies as st

from features.registry import ENTITY_ID_PATTERN
from service.redaction import RedactCustomerIds, redact

IDS = st.from_regex(ENTITY_ID_PATTERN, fullmatch=True)


@given(customer_id=IDS, query=st.sampled_from(["", "?top_k=3", "#x"]))
def test_every_valid_id_is_replaced_by_the_route_template(customer_id: str, query: str) -> None:
    assert redact(f"/v1/customers/{customer_id}/features{query}") == f"/v1/customers/{{customer_id}}/features{query}"
    assert redact(f"/v1/customers/{customer_id}") == "/v1/customers/{customer_id}"


def test_other_paths_are_left_alone() -> None:
    for path in ("/v1/recommend", "/health", "/schema/openapi.json", "/v1/customer/C1"):
        assert redact(path) == path


@given(customer_id=IDS)
def test_the_filter_redacts_uvicorns_access_record(customer_id: str) -> None:
    # The shape uvicorn's access logger emits: the path is an argument, formatted by the handler.
    path = f"/v1/customers/{customer_id}/features"
    args = ("1.2.3.4:5", "GET", path, "1.1", 200)
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d', args, None)
    assert RedactCustomerIds().filter(record) is True
    assert record.getMessage() == '1.2.3.4:5 - "GET /v1/customers/{customer_id}/features HTTP/1.1" 200'
