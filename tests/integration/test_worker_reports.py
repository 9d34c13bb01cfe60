"""The worker's task body against the real Kafka and Redis: every node of a task is reported,
even when one outcome cannot be, and a task whose nodes are all refused reports nothing."""

import json
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from confluent_kafka import Consumer

from devtools.devstack import TEST_REDIS_DB, wait_until
from devtools.topics import delete_topics
from workers import heartbeat, tasks
from workflows import kafka_io, mirror
from workflows.conf import conf
from workflows.messages import TASK_COMPLETE

DEADLINE_S = 30.0
CLOSED_PORT = 1


@pytest.fixture
def reports(settings: Any) -> Iterator[Consumer]:
    """task.complete under a prefix of this test's own, read from its start."""
    settings.WORKFLOWS = {**settings.WORKFLOWS, "KAFKA_TOPIC_PREFIX": f"worker-{uuid.uuid4().hex[:8]}."}
    settings.REDIS_URL = f"redis://127.0.0.1:6379/{TEST_REDIS_DB}"
    conf.cache_clear()
    mirror.client.cache_clear()
    kafka_io.ensure_topics(partitions=1)
    consumer = kafka_io.consumer(f"test-{uuid.uuid4().hex}", [TASK_COMPLETE])
    # Assigned before anything is produced: a consumer that joins late could start past a report.
    wait_until(lambda: consumer.poll(0.1) is None and consumer.assignment(), DEADLINE_S, "the assignment")
    yield consumer
    consumer.close()
    delete_topics()
    conf.cache_clear()
    mirror.client.cache_clear()


def payload(execution_id: str, node_id: str, **config: Any) -> dict[str, Any]:
    return {
        "execution_id": execution_id,
        "node_id": node_id,
        "position": 0,
        "attempt": 1,
        "handler": "input",
        "config": config,
        "upstream": {},
        "input": {},
        "timeout_seconds": 10.0,
    }


def read(consumer: Consumer, count: int) -> dict[str, dict[str, Any]]:
    """The first `count` reports, by node id (fails at the deadline)."""
    found: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + DEADLINE_S
    while len(found) < count and time.monotonic() < deadline:
        for message in consumer.consume(count - len(found), 0.5):
            if message.error() is None:
                report = json.loads(message.value())
                found[report["node_id"]] = report
    assert len(found) == count, f"got {sorted(found)} of {count} reports"
    return found


def test_an_output_too_large_for_kafka_fails_its_node_and_the_others_are_reported(
    reports: Consumer,
) -> None:
    execution_id = str(uuid.uuid4())
    huge = "x" * 2_000_000  # over the producer's 1 MB message limit
    loud = {
        **payload(execution_id, "loud", url=huge, status_code=500, mock_latency_seconds=0),
        "handler": "call_external_service",
    }  # its error message, not its output, is over the limit
    tasks.execute(
        [
            payload(execution_id, "small", n=1),
            payload(execution_id, "huge", blob=huge),
            loud,
            payload(execution_id, "last"),
        ],
        [],
        "worker-test",
    )
    found = read(reports, 4)
    assert found["small"]["status"] == "COMPLETED" and found["small"]["output"] == {"n": 1}
    assert found["last"]["status"] == "COMPLETED"
    assert found["huge"]["status"] == "FAILED" and found["huge"]["output"] is None
    assert "over the limit of 524,288 bytes (WORKFLOW_MAX_OUTPUT_BYTES)" in found["huge"]["error"]
    assert found["loud"]["status"] == "FAILED"
    assert "could not report the outcome" in found["loud"]["error"]
    assert "MSG_SIZE_TOO_LARGE" in found["loud"]["error"]


def test_nodes_run_when_the_mirror_is_unreachable(reports: Consumer, settings: Any) -> None:
    settings.REDIS_URL = f"redis://127.0.0.1:{CLOSED_PORT}/0"
    mirror.client.cache_clear()
    execution_id = str(uuid.uuid4())
    tasks.execute([payload(execution_id, "a"), payload(execution_id, "b")], [], "worker-test")
    assert {node: report["status"] for node, report in read(reports, 2).items()} == {
        "a": "COMPLETED",
        "b": "COMPLETED",
    }


def test_a_task_whose_nodes_are_all_refused_reports_nothing(reports: Consumer) -> None:
    """A task delivered twice: its node is already running elsewhere under the same attempt."""
    execution_id = str(uuid.uuid4())
    running = {"status": "RUNNING", "handler": "input", "position": 0, "attempt": 1, "worker": "other"}
    mirror.client().hset(mirror.key(execution_id), "n:a", json.dumps(running))
    try:
        tasks.execute([payload(execution_id, "a")], [], "worker-test")
        tasks.execute([payload(execution_id, "b")], [], "worker-test")  # a node it does run, as a marker
        found = read(reports, 1)
        assert list(found) == ["b"]
        assert not reports.consume(1, 1.0)
    finally:
        mirror.client().delete(mirror.key(execution_id))


def test_a_one_node_task_of_an_earlier_version_still_runs(reports: Consumer) -> None:
    tasks.run_node.apply(args=[payload(str(uuid.uuid4()), "old", n=2)]).get()
    assert read(reports, 1)["old"]["output"] == {"n": 2}


def test_refused_payloads_that_name_their_node_fail_it_in_a_report(reports: Consumer) -> None:
    """An unknown handler (a rolling deploy adding one), a bad config or timeout used to be only
    dead-lettered: no report, and the node stayed QUEUED forever with nothing to show it lost."""
    execution_id = str(uuid.uuid4())
    tasks.run_nodes.apply(
        args=[
            [
                {**payload(execution_id, "later"), "handler": "added_in_the_next_release"},
                {**payload(execution_id, "config"), "config": ["not", "an", "object"]},
                {**payload(execution_id, "timeout"), "timeout_seconds": -1},
                {**payload(execution_id, "anonymous"), "node_id": None},  # no node to fail
                payload(execution_id, "good", n=1),
            ]
        ]
    ).get()
    found = read(reports, 4)
    assert found["good"]["status"] == "COMPLETED"
    for node_id, reason in [
        ("later", "unknown_handler"),
        ("config", "invalid_config"),
        ("timeout", "invalid_timeout_seconds"),
    ]:
        assert found[node_id]["status"] == "FAILED" and found[node_id]["attempt"] == 1
        assert f"the worker refused the node's payload ({reason})" in found[node_id]["error"]
    assert "added_in_the_next_release" in found["later"]["error"]
    assert not reports.consume(1, 1.0)


def test_an_output_that_is_not_json_fails_its_node(reports: Consumer) -> None:
    """A set used to be reported as its str() and NaN as the non-JSON token NaN (which PostgreSQL's
    jsonb refuses): the node 'completed' with an output nobody returned, or not at all."""
    execution_id = str(uuid.uuid4())
    tasks.execute(
        [
            payload(execution_id, "set", tags={"a", "b"}),
            payload(execution_id, "nan", score=float("nan")),
            payload(execution_id, "inf", score=float("inf")),
            payload(execution_id, "good", n=1),
        ],
        [],
        "worker-test",
    )
    found = read(reports, 4)
    assert found["good"]["status"] == "COMPLETED"
    for node_id in ("set", "nan", "inf"):
        assert found[node_id]["status"] == "FAILED" and found[node_id]["output"] is None
        assert "the handler's output cannot be encoded as JSON" in found[node_id]["error"]
    assert "set is not JSON serializable" in found["set"]["error"]


def test_an_error_escaping_the_run_fails_the_nodes_not_reported_yet(
    reports: Consumer, monkeypatch: Any
) -> None:
    """It used to escape the task: Celery acknowledged it and the heartbeat released the nodes not
    reported yet, the only evidence of them."""

    def thread_trouble(jobs: Sequence[tasks.Job]) -> Iterator[tuple[tasks.Job, Any, str]]:
        yield jobs[0], {"n": 1}, ""
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(tasks, "run_all", thread_trouble)
    execution_id = str(uuid.uuid4())
    tasks.execute([payload(execution_id, "first"), payload(execution_id, "second")], [], "worker-test")
    found = read(reports, 2)
    assert found["first"]["status"] == "COMPLETED"
    assert found["second"]["status"] == "FAILED"
    assert "can't start new thread" in found["second"]["error"]
    assert heartbeat.held() == []


def test_nodes_whose_outcome_cannot_be_reported_stay_held_as_overrunning(
    reports: Consumer, monkeypatch: Any
) -> None:
    """It used to release them from the heartbeat: acknowledged, unreported, and nothing holding
    them, they stayed RUNNING forever. Held as past a timeout of 0, the reconciler's overrun rule
    declares them lost."""

    def broken(publication: kafka_io.Publication) -> None:
        raise BufferError("Local: Queue full")

    monkeypatch.setattr(tasks, "deliver", broken)
    execution_id = str(uuid.uuid4())
    try:
        with pytest.raises(BufferError):
            tasks.execute([payload(execution_id, "a"), payload(execution_id, "b")], [], "worker-test")
        held = {tuple(entry[:3]): entry[4:] for entry in heartbeat.held()}
        assert held == {(execution_id, "a", 1): [0.0, False], (execution_id, "b", 1): [0.0, False]}
    finally:
        heartbeat.release([(execution_id, "a", 1), (execution_id, "b", 1)])
