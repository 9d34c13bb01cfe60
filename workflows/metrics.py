"""Prometheus metrics: node outcomes aggregated in Redis, read with the database and Kafka at scrape time.

The scheduler, the workers and the API are separate processes, so per-node counters and
histograms cannot live in one process's memory: the scheduler adds each batch's finished nodes to
one Redis hash (`add_outcomes`, in the MULTI that writes the batch's mirror), and `/metrics`
reads that hash, counts executions by status in the database, and asks Kafka for the scheduler's
consumer lag and Redis for the Celery queue's depth. A source that is down leaves its metrics
out of the answer (and sets `workflows_metrics_source_up` to 0) instead of failing or stalling
the scrape.
"""

import logging
import math
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from functools import cache

import redis
from confluent_kafka import Consumer, KafkaException, TopicPartition
from django.conf import settings
from django.db import DatabaseError
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from redis import RedisError

from workflows import mirror
from workflows.clients import kafka_config, redis_client
from workflows.conf import conf
from workflows.durations import seconds_between
from workflows.messages import TASK_COMPLETE, WORKFLOW_START
from workflows.models import Execution, ExecutionStatus, NodeRun, NodeStatus
from workflows.scheduler import heartbeat as scheduler_heartbeat

logger = logging.getLogger(__name__)

METRICS_KEY = "wf:metrics"
SEPARATOR = "|"
RUNS = "node_runs"
DEAD_LETTERS = "dead_letters"
DURATION = "node_run_duration_seconds"
DISPATCH = "node_dispatch_latency_seconds"
BUCKET, SUM = "_bucket", "_sum"
NODE_DURATION_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
DISPATCH_LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
FINISHED_NODE_STATUSES = (NodeStatus.COMPLETED, NodeStatus.FAILED)
SCHEDULER_TOPICS = (WORKFLOW_START, TASK_COMPLETE)
KAFKA_TIMEOUT_S = 1.0
BROKER_TIMEOUT_S = 1.0


def field(*parts: str) -> str:
    """A field of the metrics hash: the metric, then its label values."""
    return SEPARATOR.join(parts)


def bucket_bound(value_s: float, bounds_s: tuple[float, ...]) -> str:
    """The `le` label of the smallest bucket that holds the value (`+Inf` above the last bound)."""
    bound = next((bound for bound in bounds_s if value_s <= bound), math.inf)
    return floatToGoString(bound)


def waited_for_backoff(node: NodeRun) -> bool:
    """Whether the attempt was dispatched with a retry delay, which is not dispatch latency.

    The scheduler delays only retries after a failure; lost attempts and retry-from-failure
    are dispatched at once, and neither counts against the retry budget.
    """
    return node.attempt - node.budget_base - node.lost_attempts > 1


def outcome_increments(nodes: Iterable[NodeRun]) -> tuple[Counter[str], defaultdict[str, float]]:
    """What finished nodes add to the metrics hash: (integer counts, float sums) by field.

    Histogram buckets are stored per bucket, not cumulatively, so an observation is one
    increment; the scrape adds them up. A histogram's count is the sum of its buckets.
    """
    counts: Counter[str] = Counter()
    sums: defaultdict[str, float] = defaultdict(float)
    for node in nodes:
        if node.status not in FINISHED_NODE_STATUSES:
            continue
        counts[field(RUNS, node.handler, node.status)] += 1
        duration_s = seconds_between(node.started_at, node.finished_at)
        if duration_s is not None:
            le = bucket_bound(duration_s, NODE_DURATION_BUCKETS_S)
            counts[field(DURATION + BUCKET, node.handler, le)] += 1
            sums[field(DURATION + SUM, node.handler)] += duration_s
        latency_s = seconds_between(node.queued_at, node.started_at)
        if latency_s is not None and not waited_for_backoff(node):
            counts[field(DISPATCH + BUCKET, bucket_bound(latency_s, DISPATCH_LATENCY_BUCKETS_S))] += 1
            sums[field(DISPATCH + SUM)] += latency_s
    return counts, sums


def add_outcomes(pipe: redis.client.Pipeline, nodes: Iterable[NodeRun]) -> None:
    """Queue on `pipe` what the COMPLETED and FAILED nodes among `nodes` add to the metrics.

    The scheduler queues this in the MULTI that writes a batch's mirror: a scrape never sees half
    a batch, and a batch is counted once (a retried MULTI is not applied twice). Other statuses
    are ignored, so a caller may pass every node a batch changed.
    """
    counts, sums = outcome_increments(nodes)
    for name, amount in counts.items():
        pipe.hincrby(METRICS_KEY, name, amount)
    for name, amount_s in sums.items():
        pipe.hincrbyfloat(METRICS_KEY, name, amount_s)


def cumulative_buckets(
    per_bucket: Mapping[float, float], bounds_s: tuple[float, ...]
) -> list[tuple[str, float]]:
    """Prometheus's cumulative (`le`, count) pairs, `+Inf` last, from counts stored per bucket.

    Counts stored under a bound that is no longer configured still land in the right
    cumulative buckets, so changing the bounds does not lose observations.
    """
    return [
        (floatToGoString(bound), sum(count for le, count in per_bucket.items() if le <= bound))
        for bound in (*bounds_s, math.inf)
    ]


def node_families(stored: Mapping[bytes, bytes]) -> list[Metric]:
    """The node counters and histograms, from the metrics hash as HGETALL returns it."""
    runs = CounterMetricFamily(
        "workflows_node_runs", "Node runs that finished, by handler and status.", labels=["handler", "status"]
    )
    buckets: defaultdict[tuple[str, ...], dict[float, float]] = defaultdict(dict)
    sums: dict[tuple[str, ...], float] = {}
    for raw_name, raw_value in sorted(stored.items()):
        name, *labels = raw_name.decode().split(SEPARATOR)
        value = float(raw_value)
        if name == DEAD_LETTERS:
            continue
        if name == RUNS:
            runs.add_metric(labels, value)
        elif name.endswith(BUCKET):
            *series_labels, le = labels
            buckets[(name.removesuffix(BUCKET), *series_labels)][float(le)] = value
        elif name.endswith(SUM):
            sums[(name.removesuffix(SUM), *labels)] = value
    duration = HistogramMetricFamily(
        "workflows_node_run_duration_seconds",
        "Time a node's finishing attempt ran in a worker, by handler.",
        labels=["handler"],
        unit="seconds",
    )
    dispatch = HistogramMetricFamily(
        "workflows_node_dispatch_latency_seconds",
        "Time from a node's dispatch to a worker starting it (retry delays left out).",
        unit="seconds",
    )
    for (metric, *labels), per_bucket in sorted(buckets.items()):
        family, bounds_s = (
            (duration, NODE_DURATION_BUCKETS_S)
            if metric == DURATION
            else (dispatch, DISPATCH_LATENCY_BUCKETS_S)
        )
        family.add_metric(
            labels, cumulative_buckets(per_bucket, bounds_s), sum_value=sums.get((metric, *labels), 0.0)
        )
    return [runs, duration, dispatch]


def dead_letter_family(stored: Mapping[bytes, bytes]) -> CounterMetricFamily:
    """Messages and task payloads refused and copied to the dead-letter topic, by source and reason."""
    family = CounterMetricFamily(
        "workflows_dead_letters",
        "Messages and task payloads refused and copied to the dead-letter topic, by source and reason.",
        labels=["source", "reason"],
    )
    for raw_name, raw_value in sorted(stored.items()):
        name, *labels = raw_name.decode().split(SEPARATOR)
        if name == DEAD_LETTERS:
            family.add_metric(labels, float(raw_value))
    return family


def scheduler_families() -> list[Metric]:
    """The schedulers alive (by heartbeat) and the seconds since any of them last made progress."""
    beats = scheduler_heartbeat.alive()
    alive = GaugeMetricFamily("workflows_schedulers_alive", "Schedulers with a live heartbeat.")
    alive.add_metric([], len(beats))
    families: list[Metric] = [alive]
    if beats:
        since = GaugeMetricFamily(
            "workflows_scheduler_seconds_since_progress",
            "Seconds since a scheduler last applied a batch or found nothing to do.",
        )
        since.add_metric([], max(0.0, time.time() - max(beat.progressed_at for beat in beats)))
        families.append(since)
    return families


def redis_families() -> list[Metric]:
    """What /metrics reads from the mirror's Redis: the metrics hash and the heartbeats."""
    stored = mirror.client().hgetall(METRICS_KEY)
    return [*node_families(stored), dead_letter_family(stored), *scheduler_families()]


def executions_by_status() -> GaugeMetricFamily:
    """Executions in each status, every status present (GROUP BY on the indexed status column)."""
    counted = dict(Execution.objects.order_by().values_list("status").annotate(Count("id")))
    family = GaugeMetricFamily("workflows_executions", "Executions by status.", labels=["status"])
    for status in ExecutionStatus.values:
        family.add_metric([status], counted.get(status, 0))
    return family


@cache
def broker_client() -> redis.Redis:
    """The Celery broker's Redis (often the same server as the mirror's, not necessarily)."""
    return redis_client("broker", BROKER_TIMEOUT_S)


def celery_queue_depth() -> GaugeMetricFamily:
    """Tasks waiting in the broker for a worker. Tasks a worker has reserved are not counted, and
    neither are retries waiting out their delay, which a worker holds until they are due."""
    queue = settings.CELERY_TASK_DEFAULT_QUEUE
    family = GaugeMetricFamily(
        "workflows_celery_queue_depth", "Tasks waiting in the Celery queue in the broker.", labels=["queue"]
    )
    family.add_metric([queue], broker_client().llen(queue))
    return family


def consumer_lag() -> GaugeMetricFamily:
    """Per partition of the scheduler's topics: messages not yet committed by its consumer group.

    A partition the group has never committed is lagging by everything still in it, since the
    scheduler starts from the earliest offset. Every call is bounded by KAFKA_TIMEOUT_S.
    """
    family = GaugeMetricFamily(
        "workflows_scheduler_consumer_lag",
        "Messages on the scheduler's topics that its consumer group has not committed, by partition.",
        labels=["topic", "partition"],
    )
    reader = lag_reader()
    topics = [conf().topic(name) for name in SCHEDULER_TOPICS]
    metadata = reader.list_topics(timeout=KAFKA_TIMEOUT_S)
    partitions = [
        TopicPartition(topic, partition)
        for topic in topics
        if topic in metadata.topics
        for partition in sorted(metadata.topics[topic].partitions)
    ]
    if not partitions:
        return family
    committed = {
        (tp.topic, tp.partition): tp.offset for tp in reader.committed(partitions, timeout=KAFKA_TIMEOUT_S)
    }
    for tp in partitions:
        low, high = reader.get_watermark_offsets(tp, timeout=KAFKA_TIMEOUT_S)
        position = committed.get((tp.topic, tp.partition), -1)
        if position < 0:  # never committed
            position = low
        family.add_metric([tp.topic, str(tp.partition)], max(0, high - position))
    return family


@cache
def lag_reader() -> Consumer:
    """A consumer in the scheduler's group that never subscribes: it only reads the group's
    committed offsets and the partitions' watermarks. (The admin client's
    list_consumer_group_offsets crashes the process on a broker whose offsets topic does not
    exist yet, in confluent-kafka 2.16.)"""
    group = conf().scheduler_group_id
    return Consumer({**kafka_config("probe"), "group.id": group, "enable.auto.commit": False})


class EngineCollector(Collector):
    """Reads every metric at scrape time; a source that fails is reported down and left out."""

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "workflows_metrics_source_up", "Whether /metrics could read this source.", labels=["source"]
        )
        sources = (
            ("database", DatabaseError, lambda: [executions_by_status()]),
            ("redis", RedisError, redis_families),
            ("broker", RedisError, lambda: [celery_queue_depth()]),
            ("kafka", (KafkaException, TimeoutError), lambda: [consumer_lag()]),
        )
        for name, failure, read in sources:
            try:
                families = read()
            except failure as exc:
                logger.warning("/metrics could not read %s: %s", name, exc)
                up.add_metric([name], 0)
                continue
            up.add_metric([name], 1)
            yield from families
        yield up


@cache
def registry() -> CollectorRegistry:
    """The engine's own registry (not prometheus_client's global one, which holds process metrics)."""
    engine = CollectorRegistry(auto_describe=False)
    engine.register(EngineCollector())
    return engine


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """GET /metrics: the Prometheus text format (or OpenMetrics, when the scraper asks for it)."""
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encoder(registry()), content_type=content_type)
