"""The assign answer, a msgspec Struct, is written byte for byte as the pydantic models it replaced wrote it."""

from __future__ import annotations

from typing import Literal

import msgspec
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from service.routes.body import json_body
from service.schemas import AgentOut, AssignResponse, ExcludedOut


class _AgentModel(BaseModel):
    agent_id: str
    score: float
    p_resolution: float
    expected_handle_time_s: float | None
    reasons: list[str]


class _ExcludedModel(BaseModel):
    agent_id: str
    reason: str


class _AssignModel(BaseModel):
    """The answer as pydantic models (before the Structs), the reference for its bytes."""

    decision_id: str
    customer_id: str
    agents: list[_AgentModel]
    excluded: list[_ExcludedModel]
    churn_risk: float | None
    ranked_by: Literal["resolution_model", "measured_rate", "order_given"]
    model_versions: dict[str, str]
    degraded: bool
    degraded_reasons: list[str]


# Any float an answer can hold (scores, probabilities, seconds) and far past it, NaN and infinities included
# (both write null); from 1e16 up pydantic writes "1e+16" where msgspec writes "1e16", which no field reaches.
_number = st.one_of(
    st.floats(min_value=-1e15, max_value=1e15), st.sampled_from([float("nan"), float("inf"), -0.0, 5e-324])
)
_agent = st.builds(
    AgentOut, st.text(), _number, _number, st.one_of(st.none(), _number), st.lists(st.text(), max_size=4)
)


_answer = st.builds(
    AssignResponse,
    decision_id=st.just("e385a2d3b0be434d943534fb416ed84f"),
    customer_id=st.just("C000042"),
    agents=st.lists(_agent, max_size=8),
    excluded=st.lists(st.builds(ExcludedOut, st.text(), st.text()), max_size=8),
    churn_risk=st.one_of(st.none(), _number),
    ranked_by=st.sampled_from(["resolution_model", "measured_rate", "order_given"]),
    model_versions=st.dictionaries(st.text(), st.text(), max_size=3),
    degraded=st.booleans(),
    degraded_reasons=st.lists(st.text(), max_size=3),
)


@given(_answer)
def test_the_assign_answer_is_written_as_pydantic_wrote_it(answer: AssignResponse) -> None:
    reference = _AssignModel.model_validate(msgspec.to_builtins(answer))
    assert json_body(answer) == reference.model_dump_json().encode()
