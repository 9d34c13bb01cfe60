"""The dead-letter topic: consumed messages and task payloads that broke their contract, kept
byte for byte with why, where they came from and who refused them, then counted in /metrics."""

import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from confluent_kafka import KafkaError, KafkaException, Message
from redis import RedisError

from workflows import kafka_io, mirror
from workflows.conf import conf
from workflows.messages import DEAD_LETTER, DEAD_LETTER_HEADER_PREFIX, InvalidMessage
from workflows.metrics import DEAD_LETTERS, METRICS_KEY, field

logger = logging.getLogger(__name__)
FLUSH_TIMEOUT_S = 10.0
# A value the broker took may still be too large to send again with the headers added (producer
# message.max.bytes, 1,000,000): such a letter keeps its first MAX_VALUE_BYTES and says so.
MAX_VALUE_BYTES = 512 * 1024


@dataclass(frozen=True)
class DeadLetter:
    """One refused message. `source` is the real topic it was read from (or `celery:<queue>` for
    a task payload); partition and offset are -1 when it did not come from Kafka."""

    source: str
    key: bytes | None
    value: bytes | None
    reason: str
    detail: str
    partition: int = -1
    offset: int = -1

    @classmethod
    def of_message(cls, message: Message, error: InvalidMessage) -> "DeadLetter":
        return cls(
            source=message.topic() or "",
            key=message.key(),
            value=message.value(),
            reason=error.reason,
            detail=str(error),
            partition=message.partition() if message.partition() is not None else -1,
            offset=message.offset() if message.offset() is not None else -1,
        )

    def where(self) -> str:
        return f"{self.source}[{self.partition}]@{self.offset}" if self.offset >= 0 else self.source

    def headers(self) -> list[tuple[str, bytes]]:
        """What travels with the original key and value (both unchanged, so a fixed message can be
        replayed by copying them back)."""
        facts = {
            "reason": self.reason,
            "detail": self.detail,
            "source": self.source,
            "partition": str(self.partition),
            "offset": str(self.offset),
            "by": socket.gethostname(),
            "at": datetime.now(UTC).isoformat(),
        }
        if self.value is not None and len(self.value) > MAX_VALUE_BYTES:
            facts["truncated_from_bytes"] = str(len(self.value))
        return [(DEAD_LETTER_HEADER_PREFIX + name, value.encode()) for name, value in facts.items()]


def send(letters: Sequence[DeadLetter], timeout_s: float = FLUSH_TIMEOUT_S) -> None:
    """Log, publish (one flush for all) and count refused messages; raise KafkaException when
    Kafka did not acknowledge them all for a reason that passes, so that the caller retries
    before committing offsets (a retry may copy some twice: the topic is at least once). A letter
    Kafka refuses for good is logged, counted as undeliverable and dropped: a dead letter that
    can never be written must not stop the consumer that refused its message."""
    for letter in letters:
        logger.error("dead-lettering %s: %s (%s)", letter.where(), letter.detail, letter.reason)
    failures: list[KafkaError] = []

    def delivered(error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            failures.append(error)

    client = kafka_io.producer()
    undeliverable: list[DeadLetter] = []
    for letter in letters:
        try:
            client.produce(
                conf().topic(DEAD_LETTER),
                key=letter.key,
                value=letter.value[:MAX_VALUE_BYTES] if letter.value is not None else None,
                headers=letter.headers(),
                on_delivery=delivered,
            )
        except KafkaException as exc:
            if kafka_io.is_transient_exception(exc):
                raise
            undeliverable.append(letter)
            logger.error("dropping the dead letter of %s, which Kafka refuses: %s", letter.where(), exc)
    if client.flush(timeout_s) or any(kafka_io.is_transient(error) for error in failures):
        shown = failures[0] if failures else "no answer in time"
        raise KafkaException(f"Kafka did not take {len(letters)} dead letter(s): {shown}")
    for error in failures:
        logger.error("a dead letter was dropped, which Kafka refuses: %s", error)
    count(letters)
    if undeliverable or failures:
        count_undeliverable(len(undeliverable) + len(failures))


def count_undeliverable(number: int) -> None:
    try:
        mirror.client().hincrby(METRICS_KEY, field(DEAD_LETTERS, "dead_letter", "undeliverable"), number)
    except RedisError as exc:
        logger.warning("could not count %d undeliverable dead letter(s): %s", number, exc)


def count(letters: Sequence[DeadLetter]) -> None:
    """Add them to the counters /metrics shows; a Redis outage loses these counts, not the letters."""
    try:
        pipe = mirror.client().pipeline(transaction=False)
        for letter in letters:
            pipe.hincrby(METRICS_KEY, field(DEAD_LETTERS, letter.source, letter.reason), 1)
        pipe.execute()
    except RedisError as exc:
        logger.warning("could not count %d dead letter(s): %s", len(letters), exc)
