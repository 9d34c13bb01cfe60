"""Workers claim the nodes of a task in the real Redis mirror, in one round trip."""

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from workflows import mirror
from workflows.devstack import TEST_REDIS_DB
from workflows.models import Execution, NodeRun

URL = f"redis://127.0.0.1:6379/{TEST_REDIS_DB}"


@pytest.fixture
def execution(settings: Any) -> Iterator[Execution]:
    """A running execution mirrored with nodes a and b QUEUED for attempt 1, c still PENDING."""
    settings.REDIS_URL = URL
    mirror.client.cache_clear()
    execution = Execution(id=uuid.uuid4(), name="claims", status="RUNNING", total_nodes=3)
    nodes = []
    for position, node_id in enumerate("abc"):
        node = NodeRun(execution=execution, node_id=node_id, handler="llm", position=position, pending_deps=0)
        node.status, node.attempt = ("QUEUED", 1) if node_id != "c" else ("PENDING", 0)
        nodes.append(node)
    mirror.publish([(execution, nodes)])
    yield execution
    mirror.client().delete(mirror.key(execution.pk))
    mirror.client.cache_clear()


def claim(execution: Execution, node_id: str, attempt: int = 1) -> tuple[str, str, dict[str, Any]]:
    detail = {"status": "RUNNING", "handler": "llm", "position": 0, "attempt": attempt, "worker": "w"}
    return str(execution.pk), node_id, detail


def test_a_task_claims_its_nodes_once_each(execution: Execution) -> None:
    assert mirror.mark_running([claim(execution, "a"), claim(execution, "b")]) == [True, True]
    assert mirror.mark_running([claim(execution, "a"), claim(execution, "b", attempt=2)]) == [False, True]
    assert mirror.read(execution.pk)[1]["b"]["attempt"] == 2
    assert mirror.mark_running([claim(execution, "b")]) == [False]  # a superseded attempt


def test_a_cancelled_node_is_not_claimed(execution: Execution) -> None:
    cancelled = {"status": "CANCELLED", "handler": "llm", "position": 0, "attempt": 1}
    mirror.client().hset(mirror.key(execution.pk), f"{mirror.NODE_PREFIX}a", json.dumps(cancelled))
    assert mirror.mark_running([claim(execution, "a"), claim(execution, "b")]) == [False, True]


def test_a_node_of_an_execution_missing_from_the_mirror_runs_and_writes_nothing(
    execution: Execution,
) -> None:
    """The mirror is a cache (Redis restarted empty): the database decides, with the reconciler."""
    other = Execution(id=uuid.uuid4(), name="gone", status="RUNNING", total_nodes=1)
    assert mirror.mark_running([claim(other, "a"), claim(execution, "a")]) == [True, True]
    assert mirror.read(other.pk) is None


def test_claims_still_work_after_redis_forgot_the_script(execution: Execution) -> None:
    redis.Redis.from_url(URL).script_flush()
    assert mirror.mark_running([claim(execution, "a"), claim(execution, "c")]) == [True, True]
    assert mirror.mark_running([claim(execution, "a")]) == [False]
