"""Kafka clients (settings from workflows/clients.py), one producer per process, and topic creation."""

import logging
import os
import threading
import zlib
from collections.abc import Callable, Sequence
from functools import partial

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from workflows import signatures
from workflows.clients import kafka_config
from workflows.conf import conf
from workflows.messages import ALL_TOPICS

logger = logging.getLogger(__name__)
PRODUCER_FLUSH_TIMEOUT_S = 10.0
ADMIN_TIMEOUT_S = 10.0
WARM_UP_TIMEOUT_S = 5.0

# Errors librdkafka raises locally that pass once a broker answers again: not flagged retriable.
TRANSIENT_LOCAL_ERRORS = frozenset(
    {
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._MSG_TIMED_OUT,
        KafkaError._TIMED_OUT,
        KafkaError._QUEUE_FULL,
        KafkaError._RESOLVE,
        KafkaError._DESTROY,
    }
)

_producer: Producer | None = None
_producer_pid: int | None = None
_producer_lock = threading.Lock()


def producer() -> Producer:
    """This process's producer (re-created after a fork, since librdkafka threads do not survive it)."""
    global _producer, _producer_pid
    with _producer_lock:
        if _producer is None or _producer_pid != os.getpid():
            _producer = Producer(kafka_config("producer"))
            _producer_pid = os.getpid()
        return _producer


def is_transient(error: KafkaError) -> bool:
    """Whether sending again can succeed: the broker said so (`retriable()`), or the error is a
    local one that passes once a broker answers (down, timed out, queue full). Everything else
    — a message too large, an invalid record, a fatal producer error — is refused for good."""
    if error.fatal():
        return False
    return error.retriable() or error.code() in TRANSIENT_LOCAL_ERRORS


def is_transient_exception(exc: KafkaException) -> bool:
    """`is_transient` for an exception; one without a KafkaError (messages still unacknowledged
    at a deadline) is transient."""
    error = exc.args[0] if exc.args else None
    return not isinstance(error, KafkaError) or is_transient(error)


def warm_up() -> None:
    """Open the producer's connections now; a broker that is down is only logged, not fatal."""
    try:
        producer().list_topics(timeout=WARM_UP_TIMEOUT_S)
    except KafkaException as exc:
        logger.warning("Kafka not reachable yet (%s); the producer will keep trying", exc)


class Publication:
    """Messages produced as they come and acknowledged together: one flush for all of them.

    Those Kafka has not acknowledged stay in `unacknowledged`, so that a retry sends only them;
    those the broker refused for good move to `refused` (by the order they were sent, from 0),
    with the error: sending them again cannot help.
    """

    def __init__(self) -> None:
        self.client = producer()
        self.unacknowledged: dict[int, tuple[str, str, bytes]] = {}
        self.refused: dict[int, tuple[tuple[str, str, bytes], KafkaError]] = {}
        self.failures: list[str] = []
        self.sent = 0

    def send(self, messages: Sequence[tuple[str, str, bytes]]) -> None:
        """Hand (logical topic, key, value) messages to the producer, which sends them at once;
        raises KafkaException when the producer refuses one outright (too large, for one)."""
        for message in messages:
            topic, key, value = message
            number = self.sent
            self.sent += 1
            self.unacknowledged[number] = message
            try:
                self.client.produce(
                    conf().topic(topic),
                    key=key,
                    value=value,
                    headers=signatures.header(topic, value),
                    on_delivery=partial(self.delivered, number),
                )
            except BaseException:
                del self.unacknowledged[number]
                raise

    def delivered(self, number: int, error: KafkaError | None, message: Message) -> None:
        if error is None:
            self.unacknowledged.pop(number, None)
        elif not is_transient(error):
            self.refused[number] = (self.unacknowledged.pop(number), error)
        else:
            self.failures.append(f"{message.topic()}: {error}")

    def wait(self, timeout_s: float = PRODUCER_FLUSH_TIMEOUT_S) -> None:
        """Wait until Kafka acknowledged every message sent; raise KafkaException when one was
        refused or is still unacknowledged at the deadline."""
        if self.unacknowledged:
            self.client.flush(timeout_s)
        if self.unacknowledged:
            raise KafkaException(
                f"Kafka did not acknowledge {len(self.unacknowledged)} message(s): "
                f"{'; '.join(self.failures[:3]) or 'no answer in time'}"
            )

    def again(self) -> "Publication":
        """A new publication of the messages this one could not deliver."""
        retry = Publication()
        retry.send(list(self.unacknowledged.values()))
        return retry


def publish(
    messages: Sequence[tuple[str, str, bytes]], timeout_s: float = PRODUCER_FLUSH_TIMEOUT_S
) -> dict[int, KafkaError]:
    """Send (logical topic, key, value) messages and wait until Kafka acknowledged every one:
    one flush per call, so a batch costs one round of acknowledgements.

    Return the messages refused for good (by their index in `messages`), by the producer or the
    broker, each with its error; raise KafkaException while a transient problem (a broker down,
    a full queue) leaves any unanswered, so that the caller sends them again.
    """
    publication = Publication()
    refused: dict[int, KafkaError] = {}
    for index, message in enumerate(messages):
        try:
            publication.send([message])
        except KafkaException as exc:
            if is_transient_exception(exc):
                raise
            refused[index] = exc.args[0]
    publication.wait(timeout_s)
    return {**refused, **{index: error for index, (_, error) in publication.refused.items()}}


def _log_refused_commit(error: KafkaError | None, partitions: list[TopicPartition]) -> None:
    """Asynchronous commits report here; a refused one only means a redelivery."""
    if error is not None and error.code() != KafkaError._NO_OFFSET:
        logger.warning("offset commit refused (%s); those messages will be delivered again", error)


def consumer(
    group_id: str,
    topics: list[str],
    on_assign: Callable[[Consumer, list[TopicPartition]], None] | None = None,
) -> Consumer:
    """A consumer that commits only when told to, after the batch's effects are durable;
    `on_assign` is told of the partitions each rebalance gives it."""
    client = Consumer({**kafka_config("consumer"), "group.id": group_id, "on_commit": _log_refused_commit})
    names = [conf().topic(name) for name in topics]
    if on_assign is None:
        client.subscribe(names)
    else:
        client.subscribe(names, on_assign=on_assign)
    return client


def partition_for(key: str, partitions: int) -> int:
    """The partition our producers put a key in: librdkafka's `consistent_random` partitioner
    (set explicitly on the producer) is CRC-32 of the key modulo the partition count."""
    return zlib.crc32(key.encode()) % partitions


def ensure_topics(partitions: int | None = None) -> list[str]:
    """Create the engine's topics if they do not exist; return the names created."""
    admin = AdminClient(kafka_config("admin"))
    existing = set(admin.list_topics(timeout=ADMIN_TIMEOUT_S).topics)
    wanted = [conf().topic(name) for name in ALL_TOPICS if conf().topic(name) not in existing]
    if not wanted:
        return []
    count = partitions or conf().kafka_partitions
    futures = admin.create_topics([NewTopic(name, count, 1) for name in wanted])
    for future in futures.values():
        try:
            future.result(ADMIN_TIMEOUT_S)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    return wanted
