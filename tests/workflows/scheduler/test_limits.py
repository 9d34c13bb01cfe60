"""Run-time size limits, pure parts: resolving templates within a budget, the scheduler's checks
of a resolved config and a task payload, and which send failures are retried."""

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from django.db import transaction
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from workers import tasks
from workers.inputs import forget_inputs, read_count
from workflows import kafka_io, services
from workflows.conf import conf
from workflows.core.limits import LimitExceeded, json_size
from workflows.core.templates import TemplateSizeError, resolve
from workflows.scheduler import apply
from workflows.scheduler.batch import Batch
from workflows.scheduler.effects import is_transient, retry_until_done
from workflows.scheduler.payloads import check_payload, resolve_queued, resolved_config

LARGE = {"text": "x" * 100_000}
ONE_INPUT_NODE = {
    "name": "input",
    "input": {"topic": "owls"},
    "dag": {"nodes": [{"id": "A", "handler": "input"}]},
}


def test_resolution_stops_once_templates_insert_more_than_the_budget() -> None:
    """Before, a 1 KB config repeating a large output was resolved in full, whatever its size."""
    config = {"prompt": " ".join(["{{ big.text }}"] * 50)}

    with pytest.raises(TemplateSizeError, match="more than 200,000 bytes"):
        resolve(config, {"big": LARGE}, max_inserted_bytes=200_000)


def test_a_value_inserted_whole_counts_as_its_json_and_is_measured_once() -> None:
    config = {"copies": ["{{ big }}"] * 3}

    assert resolve(config, {"big": LARGE}, max_inserted_bytes=3 * json_size(LARGE)) == {"copies": [LARGE] * 3}
    with pytest.raises(TemplateSizeError):
        resolve(config, {"big": LARGE}, max_inserted_bytes=3 * json_size(LARGE) - 1)


def test_a_resolved_config_over_its_limit_names_the_limit() -> None:
    config = {"prompt": "{{ big.text }} {{ big.text }}"}
    outputs = {"big": {"text": "x" * (conf().max_resolved_config_bytes // 2)}}

    with pytest.raises(
        LimitExceeded, match=r"config after templates is .* \(WORKFLOW_MAX_RESOLVED_CONFIG_BYTES\)"
    ):
        resolved_config(config, ("big",), outputs)


def test_a_config_without_templates_is_not_measured_again() -> None:
    config: dict[str, Any] = {"prompt": "hello"}

    assert resolved_config(config, (), {}) == (config, conf().max_config_bytes)


def test_a_payload_is_measured_only_when_its_outputs_could_exceed_the_bound() -> None:
    sizes: dict[str, int] = {}
    few = {f"n{i}": LARGE for i in range(15)}
    check_payload(conf().max_config_bytes, few, sizes)
    assert sizes == {}

    many = {f"n{i}": {"text": "x" * 500_000} for i in range(17)}
    with pytest.raises(LimitExceeded, match=r"task payload .* \(WORKFLOW_MAX_NODE_PAYLOAD_BYTES\)"):
        check_payload(conf().max_config_bytes, many, sizes)
    assert set(sizes) == set(many)


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (KafkaException(KafkaError(KafkaError._TRANSPORT)), True),
        (KafkaException(KafkaError(KafkaError._MSG_TIMED_OUT)), True),
        (KafkaException(KafkaError(KafkaError._QUEUE_FULL)), True),
        (KafkaException(KafkaError(KafkaError.NOT_ENOUGH_REPLICAS, retriable=True)), True),
        (KafkaException("Kafka did not acknowledge 3 message(s): no answer in time"), True),
        (KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)), False),
        (KafkaException(KafkaError(KafkaError.INVALID_RECORD)), False),
        (KafkaException(KafkaError(KafkaError._TRANSPORT, fatal=True)), False),
        (RedisConnectionError("Connection refused"), True),
        (RedisTimeoutError("Timeout reading from socket"), True),
        (ReadOnlyError("You can't write against a read only replica."), True),
        (ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"), False),
        (ResponseError("ERR string exceeds maximum allowed size (proto-max-bulk-len)"), False),
        # A Redis that cannot persist, is failing over or is full refuses for a while, not for good:
        # classed as refusals, these failed every execution of a batch while the disk was full.
        (
            ResponseError(
                "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist"
            ),
            True,
        ),
        (
            ResponseError("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'."),
            True,
        ),
        (ResponseError("OOM command not allowed when used memory > 'maxmemory'."), True),
        (ResponseError("EXECABORT Transaction discarded because of previous errors."), True),
    ],
)
def test_only_failures_that_pass_are_retried(exc: Exception, transient: bool) -> None:
    assert is_transient(exc) is transient  # type: ignore[arg-type]


def test_a_permanent_refusal_is_raised_not_retried_forever() -> None:
    """Before, retry_until_done retried every Redis and Kafka error, MSG_SIZE_TOO_LARGE included."""
    calls = []

    def refused() -> None:
        calls.append(1)
        raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))

    with pytest.raises(KafkaException):
        retry_until_done(refused)
    assert len(calls) == 1


def test_kafka_errors_flagged_retriable_by_the_broker_are_transient() -> None:
    assert kafka_io.is_transient(KafkaError(KafkaError.LEADER_NOT_AVAILABLE, retriable=True))
    assert not kafka_io.is_transient(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))


@pytest.mark.django_db
def test_a_task_payload_no_longer_carries_the_workflow_input() -> None:
    """Before, the input was copied into every node's task: a 500 KB input times 1,000 nodes."""
    execution = services.workflow_submit(
        data={
            "name": "input",
            "input": {"topic": "owls"},
            "dag": {"nodes": [{"id": "A", "handler": "input"}]},
        },
        trigger=True,
    )
    batch = Batch()
    with transaction.atomic():
        apply.start(str(execution.pk), batch)
        resolve_queued(batch)

    [dispatch] = batch.dispatches
    assert "input" not in dispatch.payload


@pytest.mark.django_db(transaction=True)  # the worker reads on a thread of its own
def test_a_worker_reads_the_input_from_the_database_once_and_still_takes_a_shipped_one() -> None:
    execution = services.workflow_submit(
        data={
            "name": "input",
            "input": {"topic": "owls"},
            "dag": {"nodes": [{"id": "A", "handler": "input"}]},
        }
    )
    payload = {
        "execution_id": str(execution.pk),
        "node_id": "A",
        "attempt": 1,
        "handler": "input",
        "config": {},
    }
    forget_inputs()

    assert tasks.context(payload).input == {"topic": "owls"}
    assert tasks.context(payload).input == {"topic": "owls"}
    assert read_count() == 1  # one read for both nodes' asks
    assert tasks.context({**payload, "input": {"topic": "queued before"}}).input == {"topic": "queued before"}
