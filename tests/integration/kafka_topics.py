"""Kafka seen from outside a stack: read a topic, publish to it, the scheduler group's offsets."""

import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from devtools.devstack import Stack, ignore_kafka_error, wait_until
from workflows import signatures
from workflows.conf import conf

PARTITIONS = 3  # start_stack creates the topics with three partitions
KAFKA_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Record:
    """One message of a topic."""

    partition: int
    offset: int
    key: str
    value: bytes
    headers: dict[str, bytes] = field(default_factory=dict)


def kafka_config(stack: Stack) -> dict[str, Any]:
    return {
        "bootstrap.servers": stack.env.get("KAFKA_BOOTSTRAP_SERVERS") or conf().kafka_bootstrap_servers,
        "log_level": 0,
        "error_cb": ignore_kafka_error,
    }


def signed(name: str, value: bytes) -> list[tuple[str, bytes]]:
    """The headers the engine's producers send (the stacks share the tests' WORKFLOW_SIGNING_KEY)."""
    return signatures.header(name, value)


Headers = Callable[[str, bytes], list[tuple[str, bytes]]]


def topic(stack: Stack, name: str) -> str:
    return stack.env["KAFKA_TOPIC_PREFIX"] + name


def read_topic(stack: Stack, name: str) -> list[Record]:
    """Every message of a topic, from the beginning to the current end of each partition."""
    real = topic(stack, name)
    consumer = Consumer(
        {**kafka_config(stack), "group.id": f"fault-test-{uuid.uuid4().hex}", "enable.auto.commit": False}
    )
    try:
        ends = {
            partition: consumer.get_watermark_offsets(
                TopicPartition(real, partition), timeout=KAFKA_TIMEOUT_S
            )[1]
            for partition in range(PARTITIONS)
        }
        consumer.assign(
            [TopicPartition(real, partition, OFFSET_BEGINNING) for partition in range(PARTITIONS)]
        )
        records: list[Record] = []
        remaining = {partition for partition, end in ends.items() if end > 0}
        deadline = time.monotonic() + KAFKA_TIMEOUT_S
        while remaining:
            assert time.monotonic() < deadline, f"could not read {real} to its end: {remaining} left"
            message = consumer.poll(0.5)
            if message is None or message.error() is not None:
                continue
            key = (message.key() or b"").decode(errors="replace")
            headers = dict(message.headers() or [])
            records.append(Record(message.partition(), message.offset(), key, message.value(), headers))
            if message.offset() + 1 >= ends[message.partition()]:
                remaining.discard(message.partition())
        return records
    finally:
        consumer.close()


def publish(
    stack: Stack, name: str, messages: Iterable[tuple[str, bytes]], headers: Headers = signed
) -> dict[int, int]:
    """Produce (key, value) messages straight to a topic, signed as the engine signs them unless
    `headers` makes others from (logical topic, value); return the last offset per partition."""
    producer = Producer(kafka_config(stack))
    delivered: list[tuple[KafkaError | None, int, int]] = []
    for key, value in messages:
        producer.produce(
            topic(stack, name),
            key=key,
            value=value,
            headers=headers(name, value),
            on_delivery=lambda error, message: delivered.append(
                (error, message.partition(), message.offset())
            ),
        )
    assert producer.flush(KAFKA_TIMEOUT_S) == 0
    assert all(error is None for error, _, _ in delivered), delivered
    last: dict[int, int] = {}
    for _, partition, offset in delivered:
        last[partition] = max(offset, last.get(partition, -1))
    return last


def committed(stack: Stack, name: str) -> dict[int, int]:
    """The scheduler group's committed offset per partition (the next message it will read)."""
    consumer = Consumer(
        {**kafka_config(stack), "group.id": stack.env["SCHEDULER_GROUP_ID"], "enable.auto.commit": False}
    )
    try:
        partitions = [TopicPartition(topic(stack, name), partition) for partition in range(PARTITIONS)]
        return {tp.partition: tp.offset for tp in consumer.committed(partitions, timeout=KAFKA_TIMEOUT_S)}
    finally:
        consumer.close()


def wait_consumed(stack: Stack, name: str, last: dict[int, int]) -> None:
    """Wait until the scheduler has processed and committed past the given offsets."""

    def past() -> bool:
        offsets = committed(stack, name)
        return all(offsets[partition] > offset for partition, offset in last.items())

    wait_until(past, 30, f"the scheduler to consume {name} past {last}", 0.2)
