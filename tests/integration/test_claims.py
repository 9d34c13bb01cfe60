"""Workers claim the nodes of a task in the real Redis mirror, in one round trip."""

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from devtools.devstack import TEST_REDIS_DB
from workflows import mirror, selectors
from workflows.models import Execution, NodeRun, WorkflowDefinition

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


def claim(
    execution: Execution, node_id: str, attempt: int = 1, worker: str = "w"
) -> tuple[str, str, dict[str, Any]]:
    """A claim; another copy of the same attempt is claimed by another worker, or the same one at
    another start time."""
    detail = {"status": "RUNNING", "handler": "llm", "position": 0, "attempt": attempt, "worker": worker}
    return str(execution.pk), node_id, detail


def test_a_task_claims_its_nodes_once_each(execution: Execution) -> None:
    assert mirror.mark_running([claim(execution, "a"), claim(execution, "b")]) == [True, True]
    duplicate = claim(execution, "a", worker="w2")
    assert mirror.mark_running([duplicate, claim(execution, "b", attempt=2)]) == [False, True]
    assert mirror.read(execution.pk)[1]["b"]["attempt"] == 2
    assert mirror.mark_running([claim(execution, "b")]) == [False]  # a superseded attempt


def test_a_cancelled_node_is_not_claimed(execution: Execution) -> None:
    cancelled = {"status": "CANCELLED", "handler": "llm", "position": 0, "attempt": 1}
    mirror.client().hset(mirror.key(execution.pk), f"{mirror.NODE_PREFIX}a", json.dumps(cancelled))
    assert mirror.mark_running([claim(execution, "a"), claim(execution, "b")]) == [False, True]


@pytest.mark.django_db
def test_an_execution_missing_from_the_mirror_is_claimed_once_and_rebuilt_around_the_claim(
    execution: Execution,
) -> None:
    """Redis restarted empty: the claim records itself, so that a second copy of the attempt (a
    redelivery, a copy of an ETA retry) is refused. It used to return 0 and write nothing, and
    every copy ran. The selectors see no summary and rebuild the rest from the database around it."""
    definition = WorkflowDefinition.objects.create(
        name="gone", digest=uuid.uuid4().hex, spec={}, node_count=2
    )
    other = Execution.objects.create(definition=definition, name="gone", status="RUNNING", total_nodes=2)
    for position, node_id in enumerate("ab"):
        NodeRun.objects.create(
            execution=other,
            node_id=node_id,
            handler="llm",
            position=position,
            pending_deps=0,
            status="QUEUED",
            attempt=1,
        )
    try:
        assert mirror.mark_running([claim(other, "a"), claim(execution, "a")]) == [True, True]
        assert mirror.mark_running([claim(other, "a", worker="w2")]) == [False]
        assert 0 < mirror.client().ttl(mirror.key(other.pk)) <= mirror.MIRROR_TTL_S
        assert mirror.read(other.pk) is None  # no summary: status reads rebuild from the database
        assert selectors.execution_status(other.pk).node_states == {"a": "QUEUED", "b": "QUEUED"}
        summary, nodes = mirror.read(other.pk)
        assert summary["total"] == 2
        assert (nodes["a"]["status"], nodes["a"]["worker"]) == ("RUNNING", "w")  # the claim stands
        assert nodes["b"]["status"] == "QUEUED"
        assert mirror.mark_running([claim(other, "a", worker="w2"), claim(other, "b")]) == [False, True]
    finally:
        mirror.client().delete(mirror.key(other.pk))


def test_a_claim_retried_after_a_timeout_is_still_the_claimer_s(execution: Execution) -> None:
    """The reply to a claim was lost (a Redis timeout) and the worker claims again: the same claim
    applied already is not a duplicate delivery."""
    claims = [claim(execution, "a"), claim(execution, "b")]
    assert mirror.mark_running(claims) == [True, True]
    assert mirror.mark_running(claims) == [True, True]
    other_copy = [
        (execution_id, node_id, {**detail, "worker": "w2"}) for execution_id, node_id, detail in claims
    ]
    assert mirror.mark_running(other_copy) == [False, False]


def test_claims_still_work_after_redis_forgot_the_script(execution: Execution) -> None:
    redis.Redis.from_url(URL).script_flush()
    assert mirror.mark_running([claim(execution, "a"), claim(execution, "c")]) == [True, True]
    assert mirror.mark_running([claim(execution, "a", worker="w2")]) == [False]
