"""Tests for workflows.metrics: bucket maths, the Redis aggregation and the /metrics exposition.

They use the real local Redis, database METRICS_TEST_REDIS_DB, and delete their keys afterwards.
"""

import math
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import prometheus_client
import pytest
import redis
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from workflows import health, metrics, mirror, services, task_queue
from workflows.api import examples
from workflows.conf import conf
from workflows.models import Execution, NodeRun, NodeStatus
from workflows.scheduler import effects

METRICS_TEST_REDIS_DB = 13
T0 = datetime(2025, 1, 6, 10, 0, 0).astimezone()
CLOSED_PORT = "127.0.0.1:1"
DOWN_SOURCE_DEADLINE_S = 3.0
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def node(
    handler: str = "llm",
    status: str = NodeStatus.COMPLETED,
    *,
    queued: float | None = 0.0,
    started: float | None = 0.003,
    finished: float | None = 1.2,
    **fields: Any,
) -> NodeRun:
    """A finished NodeRun as the scheduler holds it (never saved); times in seconds after T0."""
    return NodeRun(
        node_id=uuid.uuid4().hex[:8],
        handler=handler,
        status=status,
        attempt=fields.pop("attempt", 1),
        queued_at=None if queued is None else at(queued),
        started_at=None if started is None else at(started),
        finished_at=None if finished is None else at(finished),
        **fields,
    )


# Replaced admin clients are kept, never destroyed: destroying one while a request is still in
# flight could crash the test process. The lag reader, a consumer, is closed properly.
RETIRED_KAFKA_CLIENTS: list[object] = []


def clear_client_caches() -> None:
    if health.kafka_admin.cache_info().currsize:
        RETIRED_KAFKA_CLIENTS.append(health.kafka_admin())
        health.kafka_admin.cache_clear()
    if metrics.lag_reader.cache_info().currsize:
        metrics.lag_reader().close()
        metrics.lag_reader.cache_clear()
    mirror.client.cache_clear()
    task_queue.client.cache_clear()
    task_queue.queue_key.cache_clear()
    metrics.broker_client.cache_clear()
    conf.cache_clear()


@pytest.fixture
def store(settings: Any) -> Iterator[redis.Redis]:
    """Metrics and the Celery queue in the tests' Redis database, with a queue of this test's own."""
    url = f"redis://127.0.0.1:6379/{METRICS_TEST_REDIS_DB}"
    settings.REDIS_URL = settings.CELERY_BROKER_URL = url
    settings.CELERY_TASK_DEFAULT_QUEUE = f"test-metrics-{uuid.uuid4().hex[:8]}"
    clear_client_caches()
    client = redis.Redis.from_url(url)
    client.delete(metrics.METRICS_KEY)
    yield client
    client.delete(metrics.METRICS_KEY, settings.CELERY_TASK_DEFAULT_QUEUE)
    clear_client_caches()


@pytest.fixture
def kafka_down(settings: Any) -> Iterator[None]:
    settings.WORKFLOWS = {**settings.WORKFLOWS, "KAFKA_BOOTSTRAP_SERVERS": CLOSED_PORT}
    clear_client_caches()
    yield
    clear_client_caches()


def scrape(client: Client, **headers: str) -> tuple[dict[str, list[Sample]], Any]:
    """GET /metrics: its samples by family name, and the response."""
    response = client.get("/metrics", **headers)
    assert response.status_code == 200
    families = text_string_to_metric_families(response.content.decode())
    return {family.name: family.samples for family in families}, response


def value(samples: list[Sample], name: str, **labels: str) -> float:
    matching = [s.value for s in samples if s.name == name and s.labels == labels]
    assert len(matching) == 1, (name, labels, samples)
    return matching[0]


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(0.0, "0.005"), (0.005, "0.005"), (0.0051, "0.01"), (1.0, "1.0"), (1.2, "2.5"), (600.0, "600.0")],
)
def test_bucket_bound_is_the_smallest_bucket_holding_the_value(seconds: float, expected: str) -> None:
    assert metrics.bucket_bound(seconds, metrics.NODE_DURATION_BUCKETS_S) == expected


def test_values_above_the_last_bound_go_to_inf() -> None:
    assert metrics.bucket_bound(600.1, metrics.NODE_DURATION_BUCKETS_S) == "+Inf"


def test_cumulative_buckets_add_up_and_end_with_inf() -> None:
    per_bucket = {0.1: 2, 1.0: 3, math.inf: 1}
    assert metrics.cumulative_buckets(per_bucket, (0.1, 0.5, 1.0)) == [
        ("0.1", 2),
        ("0.5", 2),
        ("1.0", 5),
        ("+Inf", 6),
    ]


def test_counts_under_a_bound_no_longer_configured_are_kept() -> None:
    assert metrics.cumulative_buckets({0.75: 4}, (0.5, 1.0)) == [("0.5", 0), ("1.0", 4), ("+Inf", 4)]


def test_increments_count_every_finished_node_and_time_those_that_ran() -> None:
    counts, sums = metrics.outcome_increments(
        [
            node("llm"),
            node("llm", NodeStatus.FAILED, started=0.01, finished=0.03),
            node("output", queued=None, started=None, finished=5.0),  # gave up before it ran
            node("llm", NodeStatus.QUEUED, finished=None),  # not finished: ignored
            node("llm", NodeStatus.SKIPPED, queued=None, started=None, finished=None),
        ]
    )
    assert counts == {
        "node_runs|llm|COMPLETED": 1,
        "node_runs|llm|FAILED": 1,
        "node_runs|output|COMPLETED": 1,
        "node_run_duration_seconds_bucket|llm|2.5": 1,
        "node_run_duration_seconds_bucket|llm|0.025": 1,
        "node_dispatch_latency_seconds_bucket|0.005": 1,
        "node_dispatch_latency_seconds_bucket|0.01": 1,
    }
    assert sums.keys() == {"node_run_duration_seconds_sum|llm", "node_dispatch_latency_seconds_sum"}
    assert sums["node_run_duration_seconds_sum|llm"] == pytest.approx(1.197 + 0.02)
    assert sums["node_dispatch_latency_seconds_sum"] == pytest.approx(0.003 + 0.01)


def test_retry_delay_is_not_dispatch_latency() -> None:
    retried = node(attempt=2, started=30.0, finished=30.5)
    lost_then_run = node(attempt=2, lost_attempts=1, started=0.004, finished=0.5)
    counts, _ = metrics.outcome_increments([retried, lost_then_run])
    assert counts["node_dispatch_latency_seconds_bucket|0.005"] == 1
    assert sum(count for name, count in counts.items() if name.startswith("node_dispatch")) == 1
    assert counts["node_run_duration_seconds_bucket|llm|0.5"] == 2


def test_clock_skew_between_hosts_counts_as_zero_latency() -> None:
    counts, sums = metrics.outcome_increments([node(queued=0.5, started=0.2, finished=0.3)])
    assert counts["node_dispatch_latency_seconds_bucket|0.001"] == 1
    assert sums["node_dispatch_latency_seconds_sum"] == 0.0


def record(nodes: list[NodeRun], marker: str = "", *, retrying: bool = False) -> None:
    """The scheduler's effects of a batch that changed these nodes (of a made-up execution)."""
    execution = Execution(id=uuid.uuid4(), name="metrics", status="RUNNING", total_nodes=len(nodes))
    for each in nodes:
        each.execution = execution
    marker = marker or f"{effects.SENT_MARKER_PREFIX}{uuid.uuid4().hex}"
    effects.mirror_and_enqueue([(execution, nodes)], [], marker, retrying=retrying)


def test_a_batch_is_counted_in_the_multi_that_writes_its_mirror(
    store: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[bytes] = []
    send = redis.connection.Connection.send_packed_command

    def counting_send(self: redis.connection.Connection, command: Any, check_health: bool = True) -> None:
        sent.append(command)
        send(self, command, check_health)

    mirror.client().ping()  # connect first, so that only the batch's traffic is counted
    monkeypatch.setattr(redis.connection.Connection, "send_packed_command", counting_send)
    record([node(), node(), node("output", NodeStatus.FAILED, finished=0.004)])
    assert len(sent) == 1
    stored = {name.decode(): float(amount) for name, amount in store.hgetall(metrics.METRICS_KEY).items()}
    assert stored == pytest.approx(
        {
            "node_runs|llm|COMPLETED": 2,
            "node_runs|output|FAILED": 1,
            "node_run_duration_seconds_bucket|llm|2.5": 2,
            "node_run_duration_seconds_bucket|output|0.005": 1,
            "node_run_duration_seconds_sum|llm": 2 * 1.197,
            "node_run_duration_seconds_sum|output": 0.001,
            "node_dispatch_latency_seconds_bucket|0.005": 3,
            "node_dispatch_latency_seconds_sum": 3 * 0.003,
        }
    )


def test_a_batch_retried_after_a_lost_reply_is_counted_once(store: redis.Redis) -> None:
    marker = f"{effects.SENT_MARKER_PREFIX}{uuid.uuid4().hex}"
    try:
        record([node()], marker)
        record([node()], marker, retrying=True)  # the EXEC went through; its reply was lost
        assert store.hget(metrics.METRICS_KEY, "node_runs|llm|COMPLETED") == b"1"
    finally:
        store.delete(marker)


def test_a_batch_with_nothing_finished_counts_nothing(store: redis.Redis) -> None:
    record([node(status=NodeStatus.QUEUED)])
    assert not store.exists(metrics.METRICS_KEY)


@pytest.mark.django_db
def test_exposition_shows_every_metric(store: redis.Redis, settings: Any) -> None:
    record([node(), node("llm", NodeStatus.FAILED, started=0.01, finished=0.03)])
    pending = services.workflow_submit(data=examples.WORKFLOW)
    services.workflow_submit(data=examples.WORKFLOW, trigger=True)
    store.rpush(settings.CELERY_TASK_DEFAULT_QUEUE, "task-1", "task-2", "task-3")

    samples, response = scrape(Client())

    assert response["Content-Type"] == PROMETHEUS_TEXT
    executions = samples["workflows_executions"]
    assert value(executions, "workflows_executions", status="PENDING") == 1
    assert value(executions, "workflows_executions", status="RUNNING") == 1
    assert value(executions, "workflows_executions", status="FAILED") == 0
    assert pending.status == "PENDING"

    runs = samples["workflows_node_runs"]
    assert value(runs, "workflows_node_runs_total", handler="llm", status="COMPLETED") == 1
    assert value(runs, "workflows_node_runs_total", handler="llm", status="FAILED") == 1

    duration = samples["workflows_node_run_duration_seconds"]
    name = "workflows_node_run_duration_seconds"
    assert value(duration, f"{name}_bucket", handler="llm", le="0.01") == 0
    assert value(duration, f"{name}_bucket", handler="llm", le="0.025") == 1
    assert value(duration, f"{name}_bucket", handler="llm", le="2.5") == 2
    assert value(duration, f"{name}_bucket", handler="llm", le="+Inf") == 2
    assert value(duration, f"{name}_count", handler="llm") == 2
    assert value(duration, f"{name}_sum", handler="llm") == pytest.approx(1.217)

    dispatch = samples["workflows_node_dispatch_latency_seconds"]
    assert value(dispatch, "workflows_node_dispatch_latency_seconds_count") == 2

    depth = samples["workflows_celery_queue_depth"]
    assert value(depth, "workflows_celery_queue_depth", queue=settings.CELERY_TASK_DEFAULT_QUEUE) == 3

    up = samples["workflows_metrics_source_up"]
    for source in ("database", "redis", "broker"):
        assert value(up, "workflows_metrics_source_up", source=source) == 1


@pytest.mark.django_db
def test_openmetrics_when_the_scraper_asks(store: redis.Redis) -> None:
    response = Client().get("/metrics", HTTP_ACCEPT="application/openmetrics-text; version=1.0.0")
    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.decode().endswith("# EOF\n")


@pytest.mark.django_db
def test_kafka_down_leaves_lag_out_and_answers_fast(store: redis.Redis, kafka_down: None) -> None:
    started = time.monotonic()
    samples, _ = scrape(Client())
    assert time.monotonic() - started < DOWN_SOURCE_DEADLINE_S
    assert "workflows_scheduler_consumer_lag" not in samples
    assert value(samples["workflows_metrics_source_up"], "workflows_metrics_source_up", source="kafka") == 0
    assert "workflows_executions" in samples and "workflows_celery_queue_depth" in samples


@pytest.mark.django_db
def test_redis_down_leaves_its_metrics_out(settings: Any) -> None:
    settings.REDIS_URL = settings.CELERY_BROKER_URL = f"redis://{CLOSED_PORT}/0"
    clear_client_caches()
    try:
        samples, _ = scrape(Client())
    finally:
        clear_client_caches()
    up = samples["workflows_metrics_source_up"]
    assert value(up, "workflows_metrics_source_up", source="redis") == 0
    assert value(up, "workflows_metrics_source_up", source="broker") == 0
    assert "workflows_node_runs" not in samples and "workflows_celery_queue_depth" not in samples
    assert "workflows_executions" in samples


def test_metrics_have_their_own_registry() -> None:
    assert metrics.registry() is not prometheus_client.REGISTRY
    assert "workflows_executions" not in prometheus_client.generate_latest().decode()


def test_only_get_is_allowed() -> None:
    assert Client().post("/metrics").status_code == 405
