"""Dependency checks for /health: each reports up/down and its round-trip latency."""

import time
from collections.abc import Callable
from functools import cache
from typing import Any

from confluent_kafka.admin import AdminClient
from django.db import connection

from workflows import mirror
from workflows.conf import conf

KAFKA_TIMEOUT_S = 2.0


@cache
def kafka_admin() -> AdminClient:
    """One admin client per process; librdkafka reconnects it when the broker comes back."""
    return AdminClient({"bootstrap.servers": conf().kafka_bootstrap_servers, "socket.timeout.ms": 2000})


def check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def check_redis() -> None:
    mirror.client().ping()


def check_kafka() -> None:
    metadata = kafka_admin().list_topics(timeout=KAFKA_TIMEOUT_S)
    if not metadata.brokers:
        raise ConnectionError("no Kafka broker answered")


CHECKS: dict[str, Callable[[], None]] = {
    "database": check_database,
    "redis": check_redis,
    "kafka": check_kafka,
}


def probe(check: Callable[[], None]) -> dict[str, Any]:
    """Run one check, timing it; an exception means the dependency is down."""
    started = time.perf_counter()
    try:
        check()
    except Exception as exc:  # any failure of a dependency is reported, not raised
        return {
            "status": "down",
            "latency_ms": round((time.perf_counter() - started) * 1000, 2),
            "error": str(exc),
        }
    return {"status": "up", "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


def health() -> dict[str, Any]:
    """The state of every dependency; `down` lists the names of those that failed."""
    dependencies = {name: probe(check) for name, check in CHECKS.items()}
    down = [name for name, result in dependencies.items() if result["status"] == "down"]
    return {"status": "degraded" if down else "ok", "down": down, "dependencies": dependencies}
