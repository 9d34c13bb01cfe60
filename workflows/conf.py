"""Typed access to the engine's own settings (the WORKFLOWS dict in settings)."""

from dataclasses import dataclass
from functools import cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


@dataclass(frozen=True)
class EngineConf:
    """The engine's knobs, parsed once per process."""

    kafka_bootstrap_servers: str
    kafka_topic_prefix: str
    kafka_partitions: int
    scheduler_group_id: str
    mock_latency_seconds: tuple[float, float]
    node_timeout_seconds: float
    min_tasks_per_batch: int
    max_nodes_per_task: int
    worker_heartbeat_seconds: float
    worker_dead_after_seconds: float

    def topic(self, name: str) -> str:
        """The real topic name for a logical one (tests prefix topics per session)."""
        return f"{self.kafka_topic_prefix}{name}"


def parse_latency(text: str) -> tuple[float, float]:
    """Parse "1-2" (a range) or "0.5" (a fixed value) into (low, high) seconds."""
    low, _, high = text.partition("-")
    bounds = (float(low), float(high or low))
    if bounds[0] < 0 or bounds[1] < bounds[0]:
        raise ValueError(f"invalid mock latency {text!r}: expected 'LOW-HIGH' seconds, LOW <= HIGH")
    return bounds


@cache
def conf() -> EngineConf:
    """The engine configuration of this process."""
    raw = settings.WORKFLOWS
    return EngineConf(
        kafka_bootstrap_servers=raw["KAFKA_BOOTSTRAP_SERVERS"],
        kafka_topic_prefix=raw["KAFKA_TOPIC_PREFIX"],
        kafka_partitions=int(raw["KAFKA_PARTITIONS"]),
        scheduler_group_id=raw["SCHEDULER_GROUP_ID"],
        mock_latency_seconds=parse_latency(raw["MOCK_LATENCY_SECONDS"]),
        node_timeout_seconds=float(raw["NODE_TIMEOUT_SECONDS"]),
        min_tasks_per_batch=at_least_one("MIN_TASKS_PER_BATCH", raw["MIN_TASKS_PER_BATCH"]),
        max_nodes_per_task=at_least_one("MAX_NODES_PER_TASK", raw["MAX_NODES_PER_TASK"]),
        worker_heartbeat_seconds=positive("WORKER_HEARTBEAT_SECONDS", raw["WORKER_HEARTBEAT_SECONDS"]),
        worker_dead_after_seconds=positive("WORKER_DEAD_AFTER_SECONDS", raw["WORKER_DEAD_AFTER_SECONDS"]),
    )


def at_least_one(name: str, text: object) -> int:
    """A count setting: a whole number of at least 1."""
    try:
        value = int(str(text))
    except ValueError:
        value = 0
    if value < 1:
        raise ImproperlyConfigured(f"WORKFLOW_{name} must be a whole number of at least 1, not {text!r}")
    return value


def positive(name: str, text: object) -> float:
    """A duration setting: a number of seconds above 0."""
    try:
        value = float(str(text))
    except ValueError:
        value = 0.0
    if not value > 0:
        raise ImproperlyConfigured(f"WORKFLOW_{name} must be a number of seconds above 0, not {text!r}")
    return value
