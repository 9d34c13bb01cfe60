"""The reconciler on a real Redis of its own: heartbeats, the epoch and the queue as evidence of loss."""

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from workflows import services, task_queue
from workflows.devstack import PrivateRedis
from workflows.models import NodeRun, NodeStatus
from workflows.reconciler import EPOCH_KEY, EVERY_EXECUTION, WORKERS_KEY, Reconciler

pytestmark = pytest.mark.django_db
QUEUE = "reconciler-test"
DEAD_AFTER_S = 10.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    private = PrivateRedis(Path(tmp_path_factory.mktemp("redis")))
    private.start()
    yield private
    private.stop()


@pytest.fixture
def client(server: PrivateRedis) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(server.url)
    connection.flushdb()
    yield connection
    connection.close()


def reconciler(client: redis.Redis, started_s_ago: float = 0.0) -> Reconciler:
    return Reconciler(lambda: client, lambda: QUEUE, DEAD_AFTER_S, started_at=time.time() - started_s_ago)


def beat(client: redis.Redis, name: str, age_s: float, *held: list[Any]) -> None:
    doc = {"worker": name, "at": time.time() - age_s, "held": list(held)}
    client.hset(WORKERS_KEY, f"{name}/1", json.dumps(doc))


def passes(rec: Reconciler) -> list[tuple[str, str, int]]:
    found = [loss.attempt for loss in rec.losses(lambda: EVERY_EXECUTION)]
    rec.applied()
    return found


def queued_execution(width: int, queued_at: datetime, status: str = NodeStatus.QUEUED) -> str:
    nodes = [{"id": f"n{i}", "handler": "llm"} for i in range(width)]
    execution = services.workflow_submit(data={"name": "lost", "dag": {"nodes": nodes}})
    NodeRun.objects.filter(execution=execution).update(status=status, attempt=1, queued_at=queued_at)
    return str(execution.pk)


def test_a_dead_workers_attempts_are_lost_once_and_its_heartbeat_is_deleted(client: redis.Redis) -> None:
    rec = reconciler(client)
    beat(client, "dead", DEAD_AFTER_S + 1, ["e1", "a", 1, 2.0, 300, False], ["e1", "b", 2, None, None, False])
    beat(client, "live", 0.5, ["e1", "c", 1, 2.0, 300, False])
    assert passes(rec) == [("e1", "a", 1), ("e1", "b", 2)]
    assert client.hkeys(WORKERS_KEY) == [b"live/1"]
    assert passes(rec) == []


def test_on_a_live_worker_a_handler_past_its_timeout_is_lost_once_a_finished_one_never(
    client: redis.Redis,
) -> None:
    rec = reconciler(client)
    beat(client, "wedged", 0.5, ["e1", "a", 1, 306.0, 300, False], ["e1", "b", 1, 900.0, 300, True])
    assert passes(rec) == [("e1", "a", 1)]
    assert passes(rec) == []  # still held by the wedged worker: judged already


def test_after_redis_started_empty_what_nothing_carries_is_lost_and_queued_or_held_work_is_not(
    client: redis.Redis,
) -> None:
    restarted = time.time() - DEAD_AFTER_S - 2
    client.set(EPOCH_KEY, json.dumps({"id": "new", "at": restarted}))
    before = datetime.fromtimestamp(restarted, tz=UTC) - timedelta(seconds=1)
    execution_id = queued_execution(4, before)
    later = queued_execution(1, before + timedelta(seconds=2))
    waiting = {"execution_id": execution_id, "node_id": "n1", "attempt": 1, "handler": "llm"}
    client.lpush(QUEUE, task_queue.message([waiting]))
    unacked = json.dumps([json.loads(task_queue.message([{**waiting, "node_id": "n2"}])), "", QUEUE])
    client.hset("unacked", "tag", unacked)
    beat(client, "live", 0.5, [execution_id, "n3", 1, 1.0, 300, False])

    rec = reconciler(client, started_s_ago=3600)
    assert passes(rec) == [(execution_id, "n0", 1)]
    assert passes(rec) == []  # checked once per epoch
    assert later not in {attempt[0] for attempt in passes(rec)}

    client.set(EPOCH_KEY, json.dumps({"id": "newer", "at": time.time() - 2}))
    assert passes(rec) == []  # live workers may not have published again yet
    client.set(EPOCH_KEY, json.dumps({"id": "newest", "at": time.time() - DEAD_AFTER_S - 1}))
    assert sorted(passes(rec)) == sorted([(execution_id, "n0", 1), (later, "n0", 1)])


def test_a_scheduler_that_starts_looks_for_what_a_predecessor_committed_and_never_pushed(
    client: redis.Redis,
) -> None:
    client.set(EPOCH_KEY, json.dumps({"id": "old", "at": time.time() - 3600}))
    execution_id = queued_execution(1, datetime.now(tz=UTC) - timedelta(seconds=30))
    assert passes(reconciler(client, started_s_ago=2)) == []  # too soon after its start
    assert passes(reconciler(client, started_s_ago=DEAD_AFTER_S + 2)) == [(execution_id, "n0", 1)]
