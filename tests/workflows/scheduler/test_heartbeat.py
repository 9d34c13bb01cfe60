"""The schedulers' heartbeat in Redis and what /health makes of it: alive, progressing, stalled,
gone; on the tests' real Redis, one consumer group per test."""

import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from workflows import health, mirror
from workflows.conf import conf
from workflows.scheduler import heartbeat as scheduler_heartbeat
from workflows.scheduler.heartbeat import HEARTBEAT_TTL_S, Heartbeat
from workflows.scheduler.loop import Progress

HEARTBEAT_TEST_REDIS_DB = 13
STALL_S = 30


@pytest.fixture
def group(settings: Any) -> Iterator[str]:
    """A consumer group of this test's own, its heartbeats in the tests' Redis database."""
    name = f"test-heartbeat-{uuid.uuid4().hex[:8]}"
    url = settings.REDIS_URL = f"redis://127.0.0.1:6379/{HEARTBEAT_TEST_REDIS_DB}"
    settings.WORKFLOWS = {
        **settings.WORKFLOWS,
        "SCHEDULER_GROUP_ID": name,
        "SCHEDULER_STALL_SECONDS": str(STALL_S),
    }
    mirror.client.cache_clear()
    conf.cache_clear()
    yield name
    settings.REDIS_URL = url  # a test may have pointed it at a Redis that is down
    mirror.client.cache_clear()
    mirror.client().delete(scheduler_heartbeat.key())
    mirror.client.cache_clear()
    conf.cache_clear()


def scheduler_health() -> dict[str, Any]:
    return health.probe(health.check_scheduler)


def test_no_heartbeat_means_no_scheduler(group: str) -> None:
    result = scheduler_health()
    assert result["status"] == "down"
    assert "no scheduler is alive" in result["error"]


def test_a_beating_scheduler_that_progresses_is_up_and_a_stopped_one_is_gone_at_once(group: str) -> None:
    heartbeat = Heartbeat(Progress())
    heartbeat.start()
    try:
        assert scheduler_health()["status"] == "up"
        (beat,) = scheduler_heartbeat.alive()
        assert (beat.id, beat.pid) == (heartbeat.id, os.getpid())
    finally:
        heartbeat.stop()
    assert scheduler_health()["status"] == "down"


def test_a_scheduler_that_beats_but_makes_no_progress_is_down_as_stalled(group: str) -> None:
    progress = Progress()
    progress.progressed_at = time.time() - STALL_S - 1
    Heartbeat(progress).beat()
    result = scheduler_health()
    assert result["status"] == "down"
    assert "none has made progress for" in result["error"]
    assert "scheduler" in health.health()["down"]


def test_one_progressing_scheduler_is_enough_and_a_dead_ones_beat_expires(group: str) -> None:
    stalled, fresh = Progress(), Progress()
    stalled.progressed_at = time.time() - STALL_S - 1
    Heartbeat(stalled).beat()
    Heartbeat(fresh).beat()
    assert scheduler_health()["status"] == "up"
    assert len(scheduler_heartbeat.alive()) == 2
    assert scheduler_heartbeat.alive(now=time.time() + HEARTBEAT_TTL_S + 1) == []


def test_with_redis_down_the_scheduler_is_unknown_not_down(group: str, settings: Any) -> None:
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    mirror.client.cache_clear()
    result = scheduler_health()
    assert result["status"] == "unknown", result
    assert "scheduler" not in health.health()["down"]
