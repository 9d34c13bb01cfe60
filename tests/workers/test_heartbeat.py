"""What a worker's heartbeat says it holds: claimed attempts, how long they ran, whether finished."""

import threading
import time
from typing import Any

from devtools.devstack import TEST_REDIS_DB
from workers import heartbeat
from workflows import mirror, task_queue
from workflows.conf import conf
from workflows.scheduler.reconciler import WORKERS_KEY


def payload(node_id: str, attempt: int = 1, timeout_s: float | None = 30.0) -> dict:
    return {"execution_id": "e1", "node_id": node_id, "attempt": attempt, "timeout_seconds": timeout_s}


def test_a_claimed_attempt_is_held_until_released_and_says_when_its_handler_finished() -> None:
    held = heartbeat.hold([payload("a"), payload("b", 2, None)])
    try:
        assert held == [("e1", "a", 1), ("e1", "b", 2)]
        heartbeat.finished(("e1", "a", 1))
        shown = {tuple(entry[:3]): entry[3:] for entry in heartbeat.held()}
        assert set(shown) == {("e1", "a", 1), ("e1", "b", 2)}
        started_at, timeout_s, finished = shown[("e1", "a", 1)]
        assert 0 <= time.time() - started_at < 5 and timeout_s == 30.0 and finished is True
        assert shown[("e1", "b", 2)][1:] == [None, False]
        heartbeat.release([("e1", "a", 1)])
        assert [tuple(entry[:3]) for entry in heartbeat.held()] == [("e1", "b", 2)]
    finally:
        heartbeat.release(held)
    assert heartbeat.held() == []


def test_a_duplicate_delivery_neither_resets_nor_releases_the_running_attempt() -> None:
    """A second copy of an attempt this process runs is refused by its claim and released: only
    what that copy's hold inserted may go."""
    held = heartbeat.hold([payload("a")])
    try:
        heartbeat.finished(("e1", "a", 1))
        duplicate = heartbeat.hold([payload("a"), payload("b")])
        assert duplicate == [("e1", "b", 1)]
        heartbeat.release(duplicate)
        assert [entry[:3] + entry[5:] for entry in heartbeat.held()] == [["e1", "a", 1, True]]
    finally:
        heartbeat.release(held)


def test_attempts_whose_outcome_could_not_be_reported_show_as_overrunning() -> None:
    held = heartbeat.hold([payload("a", timeout_s=None)])
    try:
        heartbeat.finished(("e1", "a", 1))
        heartbeat.overran(held)
        [[*_, timeout_s, finished]] = heartbeat.held()
        assert timeout_s == 0.0 and finished is False
    finally:
        heartbeat.release(held)


class Flaky(heartbeat.Heartbeat):
    """A heartbeat whose first beat raises something that is not a Redis error."""

    def __init__(self) -> None:
        super().__init__("flaky")
        self.beats = 0
        self.beaten = threading.Event()

    def beat(self) -> None:
        self.beats += 1
        if self.beats == 1:
            raise ValueError("a bug in the beat")
        self.beaten.set()


def test_the_beat_thread_outlives_an_error_that_is_not_redis(settings: Any) -> None:
    settings.WORKFLOWS = {**settings.WORKFLOWS, "WORKER_HEARTBEAT_SECONDS": 0.05}
    conf.cache_clear()
    beat = Flaky()
    beat.start()
    try:
        assert beat.beaten.wait(10.0), "the beat thread died on the first error"
        assert beat.is_alive()
    finally:
        beat.stopping.set()
        beat.wake.set()
        beat.join(5.0)
        conf.cache_clear()


def test_a_shutdown_with_attempts_held_leaves_the_heartbeat_to_go_silent(settings: Any) -> None:
    """A cold shutdown: deleting the field would hide the held attempts from the reconciler."""
    settings.REDIS_URL = settings.CELERY_BROKER_URL = f"redis://127.0.0.1:6379/{TEST_REDIS_DB}"
    mirror.client.cache_clear()
    task_queue.client.cache_clear()
    beat = heartbeat.Heartbeat("cold")
    held = heartbeat.hold([payload("a")])
    try:
        beat.start()
        beat.stop()
        assert task_queue.client().hexists(WORKERS_KEY, beat.field)
        heartbeat.release(held)
        beat.stop()
        assert not task_queue.client().hexists(WORKERS_KEY, beat.field)
    finally:
        heartbeat.release(held)
        task_queue.client().hdel(WORKERS_KEY, beat.field)
        mirror.client.cache_clear()
        task_queue.client.cache_clear()
