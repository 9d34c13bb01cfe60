"""Typed access to the engine's own settings (the WORKFLOWS dict in settings)."""

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

# librdkafka's default `message.max.bytes`, which our producers keep: a larger message is refused.
KAFKA_MESSAGE_MAX_BYTES = 1_000_000
# Room for the other fields of the message that carries a config or an output (ids, times, error).
MESSAGE_ENVELOPE_BYTES = 64 * 1024
# Redis's default `proto-max-bulk-len` (512 MiB): the largest Celery task it stores.
REDIS_VALUE_MAX_BYTES = 512 * 1024 * 1024
# A worker is dead after this many heartbeat periods without a change, at the least: one late beat
# (a slow host, a Redis reconnect) must not be enough.
MIN_HEARTBEATS_BEFORE_DEAD = 3
KAFKA_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
# Shorter signing keys are refused: a short secret can be found from one signed message.
MIN_SIGNING_KEY_CHARS = 32
# DRF's rate syntax: requests per second, minute, hour or day (it reads the period's first letter).
RATE = re.compile(r"[1-9][0-9]*/(s|sec|second|m|min|minute|h|hour|d|day)")


@dataclass(frozen=True)
class EngineConf:
    """The engine's knobs, parsed once per process."""

    kafka_bootstrap_servers: str
    kafka_security_protocol: str
    kafka_sasl_mechanism: str
    kafka_sasl_username: str
    kafka_sasl_password: str = field(repr=False)
    kafka_ssl_ca_file: str
    kafka_topic_prefix: str
    kafka_partitions: int
    scheduler_group_id: str
    mock_latency_seconds: tuple[float, float]
    node_timeout_seconds: float
    min_tasks_per_batch: int
    max_nodes_per_task: int
    max_input_bytes: int
    max_config_bytes: int
    max_resolved_config_bytes: int
    max_output_bytes: int
    max_node_payload_bytes: int
    scheduler_stall_seconds: float
    scheduler_give_up_seconds: float
    invocation_ledger_path: str
    max_abandoned_handlers: int
    worker_heartbeat_seconds: float
    worker_dead_after_seconds: float
    retention_days: int
    mirror_ttl_seconds: int
    signing_key: bytes
    events_page_size: int
    api_reads_require_auth: bool
    metrics_require_auth: bool
    api_write_rate: str

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
    engine = EngineConf(
        kafka_bootstrap_servers=raw["KAFKA_BOOTSTRAP_SERVERS"],
        kafka_security_protocol=raw["KAFKA_SECURITY_PROTOCOL"].strip().upper(),
        kafka_sasl_mechanism=raw["KAFKA_SASL_MECHANISM"].strip().upper(),
        kafka_sasl_username=raw["KAFKA_SASL_USERNAME"],
        kafka_sasl_password=raw["KAFKA_SASL_PASSWORD"],
        kafka_ssl_ca_file=raw["KAFKA_SSL_CA_FILE"],
        kafka_topic_prefix=raw["KAFKA_TOPIC_PREFIX"],
        kafka_partitions=int(raw["KAFKA_PARTITIONS"]),
        scheduler_group_id=raw["SCHEDULER_GROUP_ID"],
        mock_latency_seconds=parse_latency(raw["MOCK_LATENCY_SECONDS"]),
        node_timeout_seconds=float(raw["NODE_TIMEOUT_SECONDS"]),
        min_tasks_per_batch=at_least_one("MIN_TASKS_PER_BATCH", raw["MIN_TASKS_PER_BATCH"]),
        max_nodes_per_task=at_least_one("MAX_NODES_PER_TASK", raw["MAX_NODES_PER_TASK"]),
        max_input_bytes=at_least_one("MAX_INPUT_BYTES", raw["MAX_INPUT_BYTES"]),
        max_config_bytes=at_least_one("MAX_CONFIG_BYTES", raw["MAX_CONFIG_BYTES"]),
        max_resolved_config_bytes=at_least_one("MAX_RESOLVED_CONFIG_BYTES", raw["MAX_RESOLVED_CONFIG_BYTES"]),
        max_output_bytes=at_least_one("MAX_OUTPUT_BYTES", raw["MAX_OUTPUT_BYTES"]),
        max_node_payload_bytes=at_least_one("MAX_NODE_PAYLOAD_BYTES", raw["MAX_NODE_PAYLOAD_BYTES"]),
        scheduler_stall_seconds=positive("SCHEDULER_STALL_SECONDS", raw["SCHEDULER_STALL_SECONDS"]),
        scheduler_give_up_seconds=positive("SCHEDULER_GIVE_UP_SECONDS", raw["SCHEDULER_GIVE_UP_SECONDS"]),
        invocation_ledger_path=raw["INVOCATION_LEDGER_PATH"],
        max_abandoned_handlers=at_least_one("MAX_ABANDONED_HANDLERS", raw["MAX_ABANDONED_HANDLERS"]),
        worker_heartbeat_seconds=positive("WORKER_HEARTBEAT_SECONDS", raw["WORKER_HEARTBEAT_SECONDS"]),
        worker_dead_after_seconds=positive("WORKER_DEAD_AFTER_SECONDS", raw["WORKER_DEAD_AFTER_SECONDS"]),
        retention_days=at_least_one("RETENTION_DAYS", raw["RETENTION_DAYS"]),
        mirror_ttl_seconds=at_least_one("MIRROR_TTL_SECONDS", raw["MIRROR_TTL_SECONDS"]),
        signing_key=signing_key(raw["SIGNING_KEY"]),
        events_page_size=at_least_one("EVENTS_PAGE_SIZE", raw["EVENTS_PAGE_SIZE"]),
        api_reads_require_auth=bool(raw["API_READS_REQUIRE_AUTH"]),
        metrics_require_auth=bool(raw["METRICS_REQUIRE_AUTH"]),
        api_write_rate=write_rate(raw["API_WRITE_RATE"]),
    )
    check_size_limits(engine)
    check_liveness(engine)
    check_kafka_security(engine)
    return engine


def check_kafka_security(engine: EngineConf) -> None:
    """Refuse a Kafka security setting librdkafka would only reject at the first connection, or
    credentials given halfway: the process would start and then fail to reach the brokers."""
    protocol = engine.kafka_security_protocol
    if protocol not in KAFKA_SECURITY_PROTOCOLS:
        raise ImproperlyConfigured(
            f"KAFKA_SECURITY_PROTOCOL={protocol!r} is not one of {', '.join(KAFKA_SECURITY_PROTOCOLS)}"
        )
    if protocol.startswith("SASL_"):
        if engine.kafka_sasl_mechanism not in KAFKA_SASL_MECHANISMS:
            raise ImproperlyConfigured(
                f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_MECHANISM, one of "
                f"{', '.join(KAFKA_SASL_MECHANISMS)}, not {engine.kafka_sasl_mechanism!r}"
            )
        missing = [
            name
            for name, value in (
                ("KAFKA_SASL_USERNAME", engine.kafka_sasl_username),
                ("KAFKA_SASL_PASSWORD", engine.kafka_sasl_password),
            )
            if not value
        ]
        if missing:
            raise ImproperlyConfigured(f"KAFKA_SECURITY_PROTOCOL={protocol} needs {' and '.join(missing)}")
    ca_file = engine.kafka_ssl_ca_file
    if ca_file and not Path(ca_file).is_file():
        raise ImproperlyConfigured(f"KAFKA_SSL_CA_FILE={ca_file!r} is not a readable file")


def check_liveness(engine: EngineConf) -> None:
    """Refuse a dead-after time that a few late heartbeats would reach: live workers would be
    declared dead and their attempts run twice."""
    least = MIN_HEARTBEATS_BEFORE_DEAD * engine.worker_heartbeat_seconds
    if engine.worker_dead_after_seconds < least:
        raise ImproperlyConfigured(
            f"WORKFLOW_WORKER_DEAD_AFTER_SECONDS={engine.worker_dead_after_seconds:g} must be at least "
            f"{MIN_HEARTBEATS_BEFORE_DEAD} times WORKFLOW_WORKER_HEARTBEAT_SECONDS="
            f"{engine.worker_heartbeat_seconds:g} (at least {least:g}): a live worker would be "
            "declared dead after a few late heartbeats"
        )


def check_size_limits(engine: EngineConf) -> None:
    """Refuse limits that would let a message exceed what Kafka or Redis accept: such a message
    would be refused only after the database committed, and its execution would fail late."""
    kafka_room = KAFKA_MESSAGE_MAX_BYTES - MESSAGE_ENVELOPE_BYTES
    # task.dispatch carries configs (resolved, or as submitted when untemplated), task.complete outputs
    carried = {
        "MAX_CONFIG_BYTES": engine.max_config_bytes,
        "MAX_RESOLVED_CONFIG_BYTES": engine.max_resolved_config_bytes,
        "MAX_OUTPUT_BYTES": engine.max_output_bytes,
    }
    for name, value in carried.items():
        if value > kafka_room:
            raise ImproperlyConfigured(
                f"WORKFLOW_{name}={value} is too large: a Kafka message holds at most "
                f"{KAFKA_MESSAGE_MAX_BYTES} bytes, so this limit must be at most {kafka_room} "
                f"(room is left for the message's other fields)"
            )
    if engine.max_config_bytes > engine.max_resolved_config_bytes:
        raise ImproperlyConfigured(
            f"WORKFLOW_MAX_CONFIG_BYTES={engine.max_config_bytes} must not exceed "
            f"WORKFLOW_MAX_RESOLVED_CONFIG_BYTES={engine.max_resolved_config_bytes}: a config "
            "without templates is sent as submitted"
        )
    task_bytes = engine.max_node_payload_bytes * engine.max_nodes_per_task
    if task_bytes > REDIS_VALUE_MAX_BYTES:
        raise ImproperlyConfigured(
            f"WORKFLOW_MAX_NODE_PAYLOAD_BYTES={engine.max_node_payload_bytes} times "
            f"WORKFLOW_MAX_NODES_PER_TASK={engine.max_nodes_per_task} is {task_bytes} bytes, more "
            f"than the {REDIS_VALUE_MAX_BYTES} bytes Redis stores in one value (a Celery task)"
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
    if not 0 < value < float("inf"):
        raise ImproperlyConfigured(f"WORKFLOW_{name} must be a number of seconds above 0, not {text!r}")
    return value


def signing_key(text: str) -> bytes:
    """The key of the messages' signatures (workflows/signatures.py): unset or short, anyone who
    can write to Kafka or Redis could forge a report or a task."""
    if len(text) < MIN_SIGNING_KEY_CHARS:
        raise ImproperlyConfigured(
            f"WORKFLOW_SIGNING_KEY must be set to a secret of at least {MIN_SIGNING_KEY_CHARS} characters, "
            "the same for every scheduler and worker (it signs their messages to one another)"
        )
    return text.encode()


def write_rate(text: object) -> str:
    """A throttle rate such as `600/min`, checked here: DRF would fail on the first write."""
    rate = str(text).strip()
    if not RATE.fullmatch(rate):
        raise ImproperlyConfigured(
            f"WORKFLOWS_API_WRITE_RATE must be requests per period such as '600/min' "
            f"(periods: s, min, hour, day), not {text!r}"
        )
    return rate
