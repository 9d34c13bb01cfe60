"""Dependency checks for /health: each reports up/down and its round-trip latency; the scheduler
counts as one, judged by its heartbeat (workflows/scheduler/heartbeat.py)."""

import time
from collections.abc import Callable
from functools import cache
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from django.db import connection
from redis import RedisError

from workflows import mirror
from workflows.clients import kafka_config
from workflows.conf import conf
from workflows.scheduler import heartbeat as scheduler_heartbeat

KAFKA_TIMEOUT_S = 2.0


class LatestError:
    """librdkafka's latest error for a client (its error_cb). A failed metadata request only says
    "Broker transport failure"; this says why, e.g. "SASL authentication error: ... Invalid
    username or password"."""

    def __init__(self) -> None:
        self.error: KafkaError | None = None

    def __call__(self, error: KafkaError) -> None:
        self.error = error


kafka_errors = LatestError()


@cache
def kafka_admin() -> AdminClient:
    """One admin client per process; librdkafka reconnects it when the broker comes back."""
    return AdminClient({**kafka_config("probe"), "error_cb": kafka_errors})


def check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def check_redis() -> None:
    mirror.client().ping()


def check_kafka() -> None:
    admin = kafka_admin()
    kafka_errors.error = None
    try:
        metadata = admin.list_topics(timeout=KAFKA_TIMEOUT_S)
    except KafkaException as exc:
        admin.poll(0)  # serves the error callbacks, which say why
        cause = kafka_errors.error
        if cause is None:
            raise
        raise ConnectionError(f"{exc}; the broker connection reported: {cause.str()}") from None
    if not metadata.brokers:
        raise ConnectionError("no Kafka broker answered")


class Unknown(Exception):
    """A check that cannot tell: what it needs is down, and that is reported already."""


class SchedulerDown(Exception):
    """No scheduler is alive, or none has made progress for WORKFLOW_SCHEDULER_STALL_SECONDS."""


def check_scheduler() -> None:
    """Some scheduler of this consumer group is alive and has made progress lately. Its progress
    counts idle polls that found nothing to do, so only a scheduler failing (or stuck) on work
    in hand stops making progress."""
    try:
        beats = scheduler_heartbeat.alive()
    except RedisError as exc:
        raise Unknown(f"the heartbeats are in Redis, which does not answer: {exc}") from None
    if not beats:
        ttl_s = scheduler_heartbeat.HEARTBEAT_TTL_S
        raise SchedulerDown(f"no scheduler is alive: none sent a heartbeat in the last {ttl_s:.0f} s")
    stalled_s = time.time() - max(beat.progressed_at for beat in beats)
    if stalled_s > conf().scheduler_stall_seconds:
        raise SchedulerDown(
            f"{len(beats)} scheduler(s) alive, but none has made progress for {stalled_s:.0f} s"
        )


CHECKS: dict[str, Callable[[], None]] = {
    "database": check_database,
    "redis": check_redis,
    "kafka": check_kafka,
    "scheduler": check_scheduler,
}


def probe(check: Callable[[], None]) -> dict[str, Any]:
    """Run one check, timing it; an exception means the dependency is down (`unknown` when the
    check could not tell, its own dependency being down)."""
    started = time.perf_counter()
    try:
        check()
    except Exception as exc:  # any failure of a dependency is reported, not raised
        return {
            "status": "unknown" if isinstance(exc, Unknown) else "down",
            "latency_ms": round((time.perf_counter() - started) * 1000, 2),
            "error": str(exc),
        }
    return {"status": "up", "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


def health() -> dict[str, Any]:
    """The state of every dependency; `down` lists the names of those that failed."""
    dependencies = {name: probe(check) for name, check in CHECKS.items()}
    down = [name for name, result in dependencies.items() if result["status"] == "down"]
    return {"status": "degraded" if down else "ok", "down": down, "dependencies": dependencies}
