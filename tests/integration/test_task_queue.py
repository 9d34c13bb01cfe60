"""The scheduler's queue entries are the ones Celery's own publish makes (workflows/task_queue.py).

Both go to the real Redis; the stack-based tests show stock workers running what the scheduler
pushes, these show the entry itself has not drifted from what Celery and kombu produce.
"""

import base64
import json
import logging
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import redis
from django.utils import timezone

from devtools.devstack import TEST_REDIS_DB
from devtools.topics import delete_topics
from workflows import kafka_io, metrics, mirror, task_queue
from workflows.conf import conf
from workflows.messages import RUN_NODES_TASK, SIGNATURE_HEADER, task_id
from workflows.models import Execution, NodeRun
from workflows.scheduler import effects, handler
from workflows.scheduler.batch import Batch, Dispatch
from workflows.scheduler.handler import Scheduler
from workflowsite.celery import app as celery_app

URL = f"redis://127.0.0.1:6379/{TEST_REDIS_DB}"
PAYLOAD = {
    "execution_id": "0b5f5f40-8e1e-4a43-9d4b-6f3f3c9a5a11",
    "node_id": "fetch",
    "position": 0,
    "attempt": 2,
    "handler": "call_external_service",
    "config": {"url": "https://example.test/é", "n": [1, 2.5, None, True]},
    "upstream": {},
    "input": {"user": "ü"},
    "timeout_seconds": 30.0,
}
VARYING = ("delivery_tag", "reply_to")


@pytest.fixture
def broker() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(URL)
    client.delete(task_queue.queue_key())
    yield client
    client.delete(task_queue.queue_key())


@pytest.fixture
def test_redis(settings: Any) -> Iterator[None]:
    """The mirror and the Celery broker in the tests' Redis database, one client for both."""
    settings.REDIS_URL = settings.CELERY_BROKER_URL = URL
    mirror.client.cache_clear()
    task_queue.client.cache_clear()
    yield
    mirror.client.cache_clear()
    task_queue.client.cache_clear()


def one_node(name: str, status: str) -> tuple[Execution, NodeRun]:
    """A running execution (never saved) with one node, `fetch`, at attempt 1 in this status."""
    execution = Execution(id=uuid.uuid4(), name=name, status="RUNNING", total_nodes=1)
    node = NodeRun(execution=execution, node_id="fetch", handler="llm", position=0, pending_deps=0)
    node.status, node.attempt = status, 1
    return execution, node


def new_marker() -> str:
    return f"{effects.SENT_MARKER_PREFIX}{uuid.uuid4().hex}"


def published_by_celery(client: redis.Redis, countdown_s: float | None, signature: str) -> dict[str, Any]:
    """What Celery publishes for the same task with the scheduler's signature header."""
    identifier = task_id(PAYLOAD["execution_id"], PAYLOAD["node_id"], PAYLOAD["attempt"])
    with celery_app.connection_for_write(URL) as connection:
        celery_app.send_task(
            RUN_NODES_TASK,
            args=[[PAYLOAD]],
            task_id=identifier,
            countdown=countdown_s,
            producer=celery_app.amqp.Producer(connection),
            ignore_result=True,
            argsrepr=identifier,
            kwargsrepr="{}",
            headers={SIGNATURE_HEADER: signature},
        )
    return json.loads(client.rpop(task_queue.queue_key()))


def pushed_by_scheduler(client: redis.Redis, countdown_s: float) -> dict[str, Any]:
    pipe = client.pipeline(transaction=True)
    task_queue.push(pipe, [task_queue.message([PAYLOAD], countdown_s)])
    pipe.execute()
    return json.loads(client.rpop(task_queue.queue_key()))


def comparable(entry: dict[str, Any]) -> dict[str, Any]:
    """The entry with its body decoded and the per-message values taken out."""
    return {
        **entry,
        "body": json.loads(base64.b64decode(entry["body"])),
        "properties": {k: v for k, v in entry["properties"].items() if k not in VARYING},
        "headers": {k: v for k, v in entry["headers"].items() if k not in ("origin", "eta")},
    }


def test_an_immediate_task_entry_is_the_one_celery_publishes(broker: redis.Redis) -> None:
    ours = pushed_by_scheduler(broker, 0.0)
    theirs = published_by_celery(broker, None, ours["headers"][SIGNATURE_HEADER])
    assert ours["headers"]["eta"] is None and theirs["headers"]["eta"] is None
    assert comparable(ours) == comparable(theirs)
    assert base64.b64decode(ours["body"]) == base64.b64decode(theirs["body"])  # the bytes signed
    assert comparable(ours)["body"][0] == [[PAYLOAD]]


def test_nodes_sharing_a_task_travel_in_one_entry_named_after_the_first(broker: redis.Redis) -> None:
    payloads = [{**PAYLOAD, "node_id": f"n{i}"} for i in range(3)]
    pipe = broker.pipeline(transaction=True)
    task_queue.push(pipe, [task_queue.message(payloads)])
    pipe.execute()
    entry = comparable(json.loads(broker.rpop(task_queue.queue_key())))
    assert entry["body"][0] == [payloads]
    assert entry["headers"]["id"] == f"{task_id(PAYLOAD['execution_id'], 'n0', PAYLOAD['attempt'])}+2"
    assert entry["headers"]["task"] == RUN_NODES_TASK


def test_a_retry_with_a_delay_carries_the_same_eta_celery_would(broker: redis.Redis) -> None:
    before = timezone.now()
    ours = pushed_by_scheduler(broker, 7.5)
    theirs = published_by_celery(broker, 7.5, ours["headers"][SIGNATURE_HEADER])
    assert comparable(ours) == comparable(theirs)
    etas = [datetime.fromisoformat(entry["headers"]["eta"]) for entry in (ours, theirs)]
    for eta in etas:
        assert before + timedelta(seconds=7.5) <= eta <= timezone.now() + timedelta(seconds=7.5)


def test_entries_of_one_batch_are_consumed_in_the_order_they_were_queued(broker: redis.Redis) -> None:
    entries = [task_queue.message([{**PAYLOAD, "node_id": f"n{i}"}]) for i in range(3)]
    pipe = broker.pipeline(transaction=True)
    task_queue.push(pipe, entries)
    pipe.execute()
    taken = [json.loads(broker.rpop(task_queue.queue_key()))["headers"]["id"] for _ in entries]
    assert [identifier.split(":")[1] for identifier in taken] == ["n0", "n1", "n2"]


@pytest.mark.parametrize("broker_host", ["127.0.0.1", "localhost"], ids=["broker-is-mirror", "broker-apart"])
def test_a_push_tells_how_many_tasks_were_waiting_before_it(
    broker: redis.Redis, test_redis: None, settings: Any, broker_host: str
) -> None:
    settings.CELERY_BROKER_URL = f"redis://{broker_host}:6379/{TEST_REDIS_DB}"
    task_queue.client.cache_clear()
    assert (task_queue.client() is mirror.client()) == (broker_host == "127.0.0.1")
    execution = Execution(id=uuid.uuid4(), name="waiting", status="RUNNING", total_nodes=1)
    entries = [task_queue.message([{**PAYLOAD, "node_id": f"n{i}"}]) for i in range(3)]
    markers = [new_marker() for _ in range(3)]
    try:
        assert effects.mirror_and_enqueue([(execution, [])], entries, markers[0], retrying=False) == 0
        assert effects.mirror_and_enqueue([(execution, [])], entries[:1], markers[1], retrying=False) == 3
        broker.delete(task_queue.queue_key())  # the workers took everything
        assert effects.mirror_and_enqueue([(execution, [])], [], markers[2], retrying=False) == 0
        assert effects.mirror_and_enqueue([(execution, [])], [], markers[2], retrying=True) is None
    finally:
        broker.delete(mirror.key(execution.pk), *markers)


def test_a_retry_after_a_lost_exec_reply_repeats_nothing(broker: redis.Redis, test_redis: None) -> None:
    """The EXEC of the mirror and the queue went through but its reply was lost; meanwhile a worker
    took the task and claimed the node. The scheduler's retry must neither put the node back to
    QUEUED nor queue the task again (the claim would then let the copy run)."""
    execution, node = one_node("lost-reply", "QUEUED")
    changes = [(execution, [node])]
    tasks = [task_queue.message([{**PAYLOAD, "execution_id": str(execution.pk), "attempt": 1}])]
    marker = new_marker()
    try:
        effects.mirror_and_enqueue(changes, tasks, marker, retrying=False)
        assert broker.rpop(task_queue.queue_key())  # a worker takes the task ...
        claimed = {"status": "RUNNING", "handler": "llm", "position": 0, "attempt": 1, "worker": "w"}
        assert mirror.mark_running([(str(execution.pk), "fetch", claimed)]) == [True]  # ... claims it

        effects.mirror_and_enqueue(changes, tasks, marker, retrying=True)

        assert broker.llen(task_queue.queue_key()) == 0
        shown = json.loads(broker.hget(mirror.key(execution.pk), "n:fetch"))
        assert shown["status"] == "RUNNING"

        effects.mirror_and_enqueue(changes, tasks, f"{marker}-never-applied", retrying=True)
        assert broker.llen(task_queue.queue_key()) == 1  # an EXEC that never ran is applied on retry
    finally:
        broker.delete(mirror.key(execution.pk), marker, f"{marker}-never-applied")


@pytest.fixture
def own_topics(test_redis: None, settings: Any) -> Iterator[None]:
    """Kafka topics of this test's own (the scheduler announces its dispatches on task.dispatch)."""
    settings.WORKFLOWS = {**settings.WORKFLOWS, "KAFKA_TOPIC_PREFIX": f"queue-{uuid.uuid4().hex[:8]}."}
    conf.cache_clear()
    kafka_io.ensure_topics(partitions=1)
    yield
    delete_topics()
    conf.cache_clear()


def batch_of(count: int) -> Batch:
    batch = Batch()
    batch.dispatches = [Dispatch({**PAYLOAD, "node_id": f"n{i}"}) for i in range(count)]
    return batch


def queued_tasks(broker: redis.Redis) -> list[int]:
    """How many nodes each queued task carries, oldest first."""
    entries = [json.loads(entry) for entry in reversed(broker.lrange(task_queue.queue_key(), 0, -1))]
    return [len(json.loads(base64.b64decode(entry["body"]))[0][0]) for entry in entries]


def test_a_batch_spreads_its_nodes_while_no_task_waits_and_shares_tasks_once_some_wait(
    broker: redis.Redis, own_topics: None, settings: Any
) -> None:
    settings.WORKFLOWS = {**settings.WORKFLOWS, "MIN_TASKS_PER_BATCH": "8"}
    conf.cache_clear()
    sched = Scheduler()
    sched.send(batch_of(3))  # nothing waited: a task per node
    sched.send(batch_of(2))  # nothing waited before the last push either
    assert queued_tasks(broker) == [1, 1, 1, 1, 1]
    sched.send(batch_of(3))  # three tasks were still waiting at the last push: the nodes share one
    assert queued_tasks(broker) == [1, 1, 1, 1, 1, 3]
    broker.delete(task_queue.queue_key())
    sched.waiting_seen_at -= handler.WAITING_TASKS_FRESH_S  # what the last push saw is too old to tell
    sched.send(batch_of(3))
    assert queued_tasks(broker) == [1, 1, 1]


def test_a_command_redis_refuses_does_not_hold_up_the_batch(
    broker: redis.Redis, test_redis: None, caplog: pytest.LogCaptureFixture
) -> None:
    """The metrics hash holds a value of the wrong type: the mirror and the tasks still go."""
    execution, node = one_node("refused", "COMPLETED")
    node.started_at = node.finished_at = timezone.now()
    marker = new_marker()
    broker.set(metrics.METRICS_KEY, "not a hash")
    try:
        with caplog.at_level(logging.ERROR, logger="workflows.scheduler"):
            waiting = effects.mirror_and_enqueue(
                [(execution, [node])], [task_queue.message([PAYLOAD])], marker, retrying=False
            )
        assert waiting == 0 and broker.llen(task_queue.queue_key()) == 1
        assert json.loads(broker.hget(mirror.key(execution.pk), "n:fetch"))["status"] == "COMPLETED"
        assert "WRONGTYPE" in caplog.text
    finally:
        broker.delete(metrics.METRICS_KEY, mirror.key(execution.pk), marker)
