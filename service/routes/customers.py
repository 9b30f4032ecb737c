"""``GET /v1/customers/{customer_id}/features`` and ``DELETE /v1/customers/{customer_id}``."""

from __future__ import annotations

from typing import Annotated

from litestar import delete, get, post
from litestar.openapi.spec import Example
from litestar.params import Parameter

from service.customers import CustomerService
from service.openapi import KEYED, WITH_BODY, error_responses
from service.schemas import CUSTOMER_ID_PATTERN, CustomerFeaturesResponse, CustomerLookup, ErasureResponse

CustomerId = Annotated[
    str, Parameter(pattern=CUSTOMER_ID_PATTERN, description="Our customer id.", examples=[Example(value="C000042")])
]


@get(
    "/v1/customers/{customer_id:str}/features",
    operation_id="customer_features",
    summary="A customer's online feature values and their freshness",
    description="The values the models would score now, in the feature contract's order and human form, with "
    "which ones are defaults and how old each view is. 404 for an unknown customer; 503 with Retry-After when "
    "Redis does not answer (a debugging read does not degrade).",
    tags=["customers"],
    responses=error_responses(*KEYED, 404, 422, 503),
)
async def customer_features(
    customer_id: CustomerId,
    customers: CustomerService,
    view: Annotated[
        str | None,
        Parameter(query="view", description="Only this feature view's values and freshness.", required=False),
    ] = None,
) -> CustomerFeaturesResponse:
    """The online state of ``customer_id``."""
    return await customers.features(customer_id, view)


@post(
    "/v1/customers/lookup",
    operation_id="customer_lookup",
    summary="Find a customer by phone, email, chat handle or account number, with their features",
    description="Resolves the identifier and reads the customer's features in one round trip to Redis (two on a "
    "cluster). The answer is the same as GET /v1/customers/{customer_id}/features, with the resolved "
    "`customer_id`. 404 when no customer holds the identifier (never a near match); 422 naming `identifier` "
    "when it cannot be normalised (a phone number needs its country code, +...). A POST, so the identifier "
    "stays out of URLs and access logs.",
    status_code=200,
    tags=["customers"],
    responses=error_responses(*KEYED, *WITH_BODY, 404, 503),
)
async def customer_lookup(data: CustomerLookup, customers: CustomerService) -> CustomerFeaturesResponse:
    """The online state of whoever holds ``data.identifier``."""
    return await customers.features(data.normalised, data.view)


@delete(
    "/v1/customers/{customer_id:str}",
    operation_id="erase_customer",
    summary="Erase a customer (right to erasure)",
    description="Marks the customer erased in the offline store (left out of every later training frame and "
    "materialization), then deletes everything the online store keeps for them; `erased` is false when Redis "
    "held nothing. Afterwards recommend treats the customer as a cold start. Safe to retry.",
    status_code=200,
    tags=["customers"],
    responses=error_responses(*KEYED, 422, 503),
)
async def erase_customer(customer_id: CustomerId, customers: CustomerService) -> ErasureResponse:
    """Erase ``customer_id`` offline and online."""
    return await customers.erase(customer_id)
