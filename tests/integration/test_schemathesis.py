"""Schemathesis against the running API's own OpenAPI schema.

For every operation in /schema, requests generated from the schema (valid ones, and invalid ones
in negative mode) must never get a 5xx, and every answer must match the status, content type
and body the schema documents for it. Bounded: MAX_EXAMPLES per operation, no per-example
deadline (the stack is shared with other tests), SUITE_DEADLINE_S for the whole run.
"""

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from devtools.devstack import Stack

MAX_EXAMPLES = 30
SUITE_DEADLINE_S = 180
REQUEST_TIMEOUT_S = 30


@pytest.fixture(scope="session")
def api_schema(stack: Stack) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(stack.url("/schema"), timeout=REQUEST_TIMEOUT_S)


@pytest.fixture(autouse=True)
def node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    """Schemathesis 4.32's pytest loader reads and writes `item._nodeid`, which pytest 9.2 no longer
    has (it keeps `item._id`); give the item the attribute so the loader can label its subtests."""
    request.node._nodeid = request.node.nodeid


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.mark.timeout(SUITE_DEADLINE_S)
@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    # no shrinking: a failure already comes with the request that caused it, and shrinking has no bound
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_schema(case: schemathesis.Case, stack: Stack) -> Any:
    case.call_and_validate(
        base_url=stack.url(""),
        checks=[not_a_server_error, response_schema_conformance],
        timeout=REQUEST_TIMEOUT_S,
    )
