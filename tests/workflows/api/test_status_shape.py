"""GET /workflows/{id} has one shape, StatusResponseSerializer's: the mirror stores node details in
it, the OpenAPI example is what the serializer renders, and the wire keeps the original engine's."""

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from devtools.devstack import TEST_REDIS_DB
from workflows import mirror, services
from workflows.api import examples
from workflows.api.serializers import NodeStateSerializer, StatusResponseSerializer, status_body
from workflows.models import ACTOR_FIELDS, Execution
from workflows.selectors import ExecutionState

pytestmark = pytest.mark.django_db
SUMMARY_FIELDS = ["name", "status", "error", "created_at", "started_at", "finished_at"]


@pytest.fixture(autouse=True)
def test_redis(settings: Any) -> Iterator[None]:
    settings.REDIS_URL = f"redis://127.0.0.1:6379/{TEST_REDIS_DB}"
    mirror.client.cache_clear()
    yield
    mirror.client.cache_clear()


@pytest.fixture
def execution() -> Iterator[Execution]:
    nodes = [{"id": "a", "handler": "input"}, {"id": "b", "handler": "llm", "dependencies": ["a"]}]
    execution = services.workflow_submit(data={"name": "shape", "dag": {"nodes": nodes}}, trigger=False)
    yield execution
    mirror.client().delete(mirror.key(execution.pk))


def test_the_status_is_the_original_engines_shape_from_the_database_and_from_the_mirror(
    client: Client, execution: Execution
) -> None:
    pending = {
        "status": "PENDING",
        "attempt": 0,
        "queued_at": None,
        "started_at": None,
        "finished_at": None,
        "worker": None,
        "error": None,
    }
    expected = {
        "execution_id": str(execution.pk),
        "name": "shape",
        "status": "PENDING",
        "progress": {"total": 2, "completed": 0, "failed": 0, "percentage": 0.0},
        "node_states": {"a": "PENDING", "b": "PENDING"},
        "nodes": {
            "a": {**pending, "handler": "input", "position": 0},
            "b": {**pending, "handler": "llm", "position": 1},
        },
        "error": None,
        "created_at": execution.created_at.isoformat(),
        "started_at": None,
        "finished_at": None,
        **dict.fromkeys(ACTOR_FIELDS),
    }
    from_database = client.get(f"/workflows/{execution.pk}").json()
    assert mirror.read(execution.pk) is not None  # the read rebuilt the mirror
    assert from_database == expected
    assert client.get(f"/workflows/{execution.pk}").json() == expected
    assert list(from_database) == list(StatusResponseSerializer().fields)
    assert [list(node) for node in from_database["nodes"].values()] == [
        list(NodeStateSerializer().fields)
    ] * 2


def test_the_openapi_example_is_what_the_serializer_renders() -> None:
    example = examples.STATUS
    summary = {field: example[field] for field in SUMMARY_FIELDS}
    summary.update({key: example["progress"][key] for key in ("total", "completed", "failed")})
    summary["actors"] = {field: example[field] for field in ACTOR_FIELDS}
    state = ExecutionState(uuid.UUID(example["execution_id"]), summary, example["nodes"])
    assert status_body(state) == example
