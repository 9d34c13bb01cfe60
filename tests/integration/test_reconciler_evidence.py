"""The reconciler on a real Redis of its own: heartbeats, the epoch and the queue as evidence of loss."""

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from devtools.devstack import PrivateRedis, free_port
from workflows import services, task_queue
from workflows.models import NodeRun, NodeStatus
from workflows.scheduler.reconciler import EPOCH_KEY, EVERY_EXECUTION, WORKERS_KEY, Reconciler

pytestmark = pytest.mark.django_db
QUEUE = "reconciler-test"
DEAD_AFTER_S = 3.0  # short, so that silences are observed in real time quickly


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


def reconciler(client: redis.Redis) -> Reconciler:
    return Reconciler(lambda: client, lambda: QUEUE, DEAD_AFTER_S)


def beat(client: redis.Redis, name: str, age_s: float, *held: list[Any]) -> None:
    """A heartbeat stamped `age_s` ago by the worker's clock (its clock may disagree with ours)."""
    doc = {"worker": name, "at": time.time() - age_s, "held": list(held)}
    client.hset(WORKERS_KEY, f"{name}/1", json.dumps(doc))


def passes(rec: Reconciler) -> list[tuple[str, str, int]]:
    found = [loss.attempt for loss in rec.losses(lambda: EVERY_EXECUTION)]
    rec.applied()
    return found


def passes_until_found(
    rec: Reconciler, between: Callable[[], None] = lambda: None, deadline_s: float = 30.0
) -> list[tuple[str, str, int]]:
    """Pass every quarter second, as the scheduler does every second, until one finds losses;
    `between` runs before each pass (live workers beating)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        between()
        found = passes(rec)
        if found:
            return found
        time.sleep(0.25)  # the pace of the passes, not a synchronisation
    return []


def queued_execution(width: int, queued_at: datetime, status: str = NodeStatus.QUEUED) -> str:
    nodes = [{"id": f"n{i}", "handler": "llm"} for i in range(width)]
    execution = services.workflow_submit(data={"name": "lost", "dag": {"nodes": nodes}})
    NodeRun.objects.filter(execution=execution).update(status=status, attempt=1, queued_at=queued_at)
    return str(execution.pk)


def test_a_dead_workers_attempts_are_lost_once_and_its_heartbeat_is_deleted(client: redis.Redis) -> None:
    rec = reconciler(client)
    beat(client, "dead", 0.5, ["e1", "a", 1, 2.0, 300, False], ["e1", "b", 2, None, None, False])
    started = time.monotonic()
    found = passes_until_found(rec, lambda: beat(client, "live", 0.1, ["e1", "c", 1, 2.0, 300, False]))
    assert found == [("e1", "a", 1), ("e1", "b", 2)]
    assert time.monotonic() - started >= DEAD_AFTER_S  # silent for that long, as this scheduler saw
    assert client.hkeys(WORKERS_KEY) == [b"live/1"]
    assert passes(rec) == []


def test_a_worker_whose_clock_lags_is_alive_while_its_beat_changes(client: redis.Redis) -> None:
    rec = reconciler(client)
    found = passes_until_found(
        rec,
        lambda: beat(client, "lagging", 60.0, ["e1", "a", 1, 2.0, 300, False]),
        deadline_s=DEAD_AFTER_S + 2,
    )
    assert found == []


def test_a_beat_still_stale_after_a_redis_outage_is_no_evidence_and_silence_counts_from_then(
    client: redis.Redis,
) -> None:
    # Redis kept its data (appendonly); the worker's last beat is from before the outage and its
    # retried beat has not landed when the scheduler reads again.
    beat(client, "w", 30.0, ["e1", "a", 1, 2.0, 300, False])
    unreachable = redis.Redis(port=free_port(), socket_connect_timeout=0.5)
    clients = iter([unreachable])
    rec = Reconciler(lambda: next(clients, client), lambda: QUEUE, DEAD_AFTER_S)
    with pytest.raises(redis.ConnectionError):
        passes(rec)
    started = time.monotonic()
    assert passes(rec) == []
    assert passes_until_found(rec) == [("e1", "a", 1)]  # the worker never beats again: dead
    assert time.monotonic() - started >= DEAD_AFTER_S


def test_a_dead_workers_attempt_that_a_live_worker_claimed_is_not_lost(client: redis.Redis) -> None:
    # the dead worker had received ("e1", "a", 1) without running it; the broker redelivered it
    rec = reconciler(client)
    beat(client, "dead", 30.0, ["e1", "a", 1, None, None, False], ["e1", "b", 1, 2.0, 300, False])
    found = passes_until_found(rec, lambda: beat(client, "live", 0.1, ["e1", "a", 1, 1.0, 300, False]))
    assert found == [("e1", "b", 1)]
    assert client.hkeys(WORKERS_KEY) == [b"live/1"]  # all it held is judged or held: forgotten


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
    rec = reconciler(client)
    client.set(EPOCH_KEY, json.dumps({"id": "old", "at": time.time() - 3600}))
    assert passes_until_found(rec, deadline_s=DEAD_AFTER_S + 2) == []  # its start-up check: nothing
    assert rec.epoch_done

    execution_id = queued_execution(4, datetime.now(tz=UTC) - timedelta(seconds=30))
    client.set(EPOCH_KEY, json.dumps({"id": "new", "at": time.time()}))
    waiting = {"execution_id": execution_id, "node_id": "n1", "attempt": 1, "handler": "llm"}
    client.lpush(QUEUE, task_queue.message([waiting]))
    unacked = json.dumps([json.loads(task_queue.message([{**waiting, "node_id": "n2"}])), "", QUEUE])
    client.hset("unacked", "tag", unacked)
    live = lambda: beat(client, "live", 0.1, [execution_id, "n3", 1, 1.0, 300, False])  # noqa: E731
    started = time.monotonic()
    assert passes_until_found(rec, live) == [(execution_id, "n0", 1)]
    assert time.monotonic() - started >= DEAD_AFTER_S  # live workers had the time to publish again
    assert passes_until_found(rec, live, deadline_s=2.0) == []  # checked once per epoch


@pytest.mark.parametrize("skew_s", [3600.0, -3600.0])
def test_a_new_epoch_stamped_by_a_skewed_clock_is_checked_from_when_this_scheduler_saw_it(
    client: redis.Redis, skew_s: float
) -> None:
    # a worker whose clock is an hour ahead (or behind) set the epoch after Redis restarted empty
    rec = reconciler(client)
    client.set(EPOCH_KEY, json.dumps({"id": "old", "at": time.time()}))
    assert passes_until_found(rec, deadline_s=DEAD_AFTER_S + 2) == []
    assert rec.epoch_done
    execution_id = queued_execution(1, datetime.now(tz=UTC) - timedelta(seconds=30))
    client.set(EPOCH_KEY, json.dumps({"id": "new", "at": time.time() + skew_s}))
    assert passes_until_found(rec, deadline_s=DEAD_AFTER_S + 10) == [(execution_id, "n0", 1)]


def test_a_scheduler_that_starts_looks_for_what_a_predecessor_committed_and_never_pushed(
    client: redis.Redis,
) -> None:
    client.set(EPOCH_KEY, json.dumps({"id": "old", "at": time.time() - 3600}))
    execution_id = queued_execution(1, datetime.now(tz=UTC) - timedelta(seconds=30))
    rec = reconciler(client)
    started = time.monotonic()
    assert passes_until_found(rec) == [(execution_id, "n0", 1)]
    assert time.monotonic() - started >= DEAD_AFTER_S  # not before live workers could publish


def test_when_a_worker_dies_what_nothing_carries_is_lost_though_its_heartbeat_did_not_show_it(
    client: redis.Redis,
) -> None:
    """Bug: a worker killed between kombu's BRPOP and its `unacked` entry (or right after taking a
    task its last heartbeat did not show) took the task with it; nothing held it, no queue carried
    it, and it stayed QUEUED until an unrelated Redis restart (seen in the CI run of the fault test
    that kills a worker mid-task of several nodes)."""
    client.set(EPOCH_KEY, json.dumps({"id": "old", "at": time.time()}))
    rec = reconciler(client)
    assert passes_until_found(rec, deadline_s=DEAD_AFTER_S + 2) == []  # its start-up check: nothing
    assert rec.epoch_done
    execution_id = queued_execution(2, datetime.now(tz=UTC) - timedelta(seconds=30))
    waiting = {"execution_id": execution_id, "node_id": "n1", "attempt": 1, "handler": "llm"}
    client.lpush(QUEUE, task_queue.message([waiting]))
    beat(client, "dead", 0.5)  # held nothing, as far as its heartbeat said
    live = lambda: beat(client, "live", 0.1)  # noqa: E731
    assert passes_until_found(rec, live, deadline_s=DEAD_AFTER_S * 3 + 5) == [(execution_id, "n0", 1)]


def test_a_scheduler_given_a_peers_partitions_looks_for_what_the_peer_committed_and_never_pushed(
    client: redis.Redis,
) -> None:
    """Bug: a scheduler killed between its commit and its push to the queue left QUEUED attempts
    that no task carried; the peer that took its partitions never looked (seen in a clean-clone CI
    run of the fault test that kills one of two schedulers)."""
    client.set(EPOCH_KEY, json.dumps({"id": "old", "at": time.time()}))
    rec = reconciler(client)
    assert passes_until_found(rec, deadline_s=DEAD_AFTER_S + 2) == []  # its start-up check: nothing
    assert rec.epoch_done
    execution_id = queued_execution(1, datetime.now(tz=UTC) - timedelta(seconds=5))
    live = lambda: beat(client, "live", 0.1)  # noqa: E731
    assert passes_until_found(rec, live, deadline_s=2.0) == []  # no evidence yet: not lost
    rec.partitions_assigned()
    assert passes_until_found(rec, live, deadline_s=5.0) == [(execution_id, "n0", 1)]
