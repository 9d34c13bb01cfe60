"""A small Kafka consumer loop: poll a batch, hand it to a handler, commit after it, stop cleanly.

What a message means is the handler's business (see workflows/scheduler/handler.py); this loop owns
batching, commit-after-processing, retrying a batch the database refused, containing a batch that
raises for good (message by message, the culprit handed to `on_poison`), giving up when it cannot
get anywhere (`Stalled`), and SIGTERM.
"""

import logging
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from types import FrameType

from confluent_kafka import Consumer, KafkaError, KafkaException, Message
from django.db import DatabaseError, DataError, IntegrityError, close_old_connections
from redis import RedisError

logger = logging.getLogger(__name__)

BATCH_SIZE = 500
POLL_TIMEOUT_S = 0.05
RETRY_BACKOFF_S = 0.2
METADATA_TIMEOUT_S = 2.0
RETRYABLE = (DatabaseError, KafkaException, RedisError)
# Database errors that some data causes (a value or a constraint the database refuses), not an
# outage: retrying cannot help, so the batch is contained like any other bug its data trips.
PERMANENT = (DataError, IntegrityError)
MAX_RETRY_BACKOFF_S = 5.0
STALLED_EXIT_CODE = 3
DEFAULT_GIVE_UP_S = 120.0


class Stalled(SystemExit):
    """The process cannot get anywhere (an outage longer than it is worth waiting in place): it
    exits non-zero, without committing, so that what runs it starts it again. A SystemExit, so
    that no handler's `except Exception` mistakes it for a poison message."""

    def __init__(self) -> None:
        super().__init__(STALLED_EXIT_CODE)


def retryable(exc: BaseException) -> bool:
    """Whether an error is an outage worth waiting out (RETRYABLE, not PERMANENT)."""
    return isinstance(exc, RETRYABLE) and not isinstance(exc, PERMANENT)


def retry_for(work: Callable[[], None], what: str, give_up_s: float, note: Callable[[], None]) -> None:
    """Run `work` until it succeeds, retrying outages with a growing backoff; raise Stalled once
    they have lasted `give_up_s`. `note` is told of every attempt."""
    backoff, first_failure = RETRY_BACKOFF_S, None
    while True:
        note()
        close_old_connections()
        try:
            work()
            return
        except RETRYABLE as exc:
            if not retryable(exc):
                raise
            first_failure = first_failure or time.monotonic()
            failing_s = time.monotonic() - first_failure
            if failing_s >= give_up_s:
                logger.error(
                    "%s failed for %.0f s (%s: %s); exiting", what, failing_s, type(exc).__name__, exc
                )
                raise Stalled from exc
            logger.warning("%s: %s: %s; retrying in %.1fs", what, type(exc).__name__, exc, backoff)
            time.sleep(backoff)
            backoff = min(backoff * 2, MAX_RETRY_BACKOFF_S)


@dataclass
class Progress:
    """When the loop last turned and last got somewhere (a batch applied, or a poll that found
    nothing to do), in wall-clock seconds: the scheduler's heartbeat publishes them."""

    turned_at: float = field(default_factory=time.time)
    progressed_at: float = field(default_factory=time.time)

    def turned(self) -> None:
        self.turned_at = time.time()

    def progressed(self) -> None:
        self.turned_at = self.progressed_at = time.time()


def skip(message: Message, exc: Exception) -> None:
    """The default for a message that raises on its own: log it; the loop commits past it."""
    logger.error("skipping the message at %s[%s]@%s: %r", *where(message), exc)


class ConsumerLoop:
    """Runs `handle_batch` over batches from `consumer` until stopped; `idle` runs every turn.

    A batch that raises something not RETRYABLE is handled again one message at a time; a message
    that still raises goes to `on_poison` (which dead-letters it), and the loop moves on.
    """

    def __init__(
        self,
        consumer: Consumer,
        handle_batch: Callable[[Sequence[Message]], None],
        *,
        idle: Callable[[], None] | None = None,
        on_poison: Callable[[Message, Exception], None] = skip,
        batch_size: int = BATCH_SIZE,
        poll_timeout_s: float = POLL_TIMEOUT_S,
        give_up_s: float = DEFAULT_GIVE_UP_S,
    ) -> None:
        self.consumer = consumer
        self.handle_batch = handle_batch
        self.idle = idle
        self.on_poison = on_poison
        self.batch_size = batch_size
        self.poll_timeout_s = poll_timeout_s
        self.give_up_s = give_up_s
        self.progress = Progress()
        self.stopping = False

    def stop(self, signum: int | None = None, frame: FrameType | None = None) -> None:
        """Finish the batch in hand, commit it, and leave the group."""
        self.stopping = True

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        try:
            while not self.stopping:
                self.turn()
            self.commit(asynchronous=False)
        finally:
            self.consumer.close()

    def turn(self) -> None:
        """One poll: process what came, commit it, then do the idle work."""
        self.progress.turned()
        messages = [m for m in self.poll() if self.usable(m)]
        if messages:
            self.process(messages)
            self.commit()
        self.progress.progressed()
        if self.idle is not None:
            self.guarded(self.idle)

    def poll(self) -> list[Message]:
        """Wait for the first message only, then take what has already arrived, up to a batch.

        consume(n, timeout) waits for n messages or the timeout, which would add the timeout to
        every hop of a quiet workflow; this returns as soon as there is something to do.
        """
        first = self.consumer.consume(1, self.poll_timeout_s)
        if not first:
            return []
        return first + self.consumer.consume(self.batch_size - 1, 0)

    def caught_up_partitions(self, topic: str) -> tuple[frozenset[int], int]:
        """The partitions of `topic` assigned to this member that it has read to the end, and the
        topic's partition count. Work that must not run while messages wait unread (declaring an
        attempt lost whose report sits in Kafka) is limited to these."""
        assigned = [tp for tp in self.consumer.assignment() if tp.topic == topic]
        if not assigned:
            return frozenset(), 0
        count = len(self.consumer.list_topics(topic, timeout=METADATA_TIMEOUT_S).topics[topic].partitions)
        committed = {tp.partition: tp.offset for tp in self.consumer.committed(assigned, METADATA_TIMEOUT_S)}
        caught_up = set()
        for tp in self.consumer.position(assigned):
            low, high = self.consumer.get_watermark_offsets(tp, timeout=METADATA_TIMEOUT_S)
            offset = tp.offset if tp.offset >= 0 else committed.get(tp.partition, -1)
            if offset >= high or low == high:
                caught_up.add(tp.partition)
        return frozenset(caught_up), count

    def commit(self, *, asynchronous: bool = True) -> None:
        """Commit the offsets of what was processed. During the run the commit is asynchronous:
        the next batch need not wait for the coordinator, and a commit that is lost or refused
        (a rebalance moved the partitions, the broker is away) only means those messages are
        delivered again and re-applied, which the handler does idempotently; a later commit
        covers them otherwise. On stop the last commit is waited for. A refused commit must
        never stop the loop."""
        try:
            self.consumer.commit(asynchronous=asynchronous)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._NO_OFFSET:
                logger.warning("offset commit failed (%s); the batch will be delivered again", exc)

    def process(self, messages: Sequence[Message]) -> None:
        """Handle a batch until it succeeds: an outage is retried (until `give_up_s`), a batch
        never skipped; a batch that raises otherwise is handled message by message, and a
        message that raises on its own goes to `on_poison`.

        Handling again is safe: the handler applies events idempotently (one transaction per
        batch, rolled back when it raises) and keeps its own post-commit effects from failing
        the batch.
        """
        try:
            retry_for(
                lambda: self.handle_batch(messages), "handling a batch", self.give_up_s, self.progress.turned
            )
        except Exception as exc:  # not retryable: a bug some message's data trips
            if len(messages) == 1:
                logger.exception("the message at %s[%s]@%s cannot be handled", *where(messages[0]))
                retry_for(
                    partial(self.on_poison, messages[0], exc),
                    "dead-lettering",
                    self.give_up_s,
                    self.progress.turned,
                )
                return
            logger.error("a batch of %d raised %r; handling its messages one by one", len(messages), exc)
            for message in messages:
                self.process([message])

    def guarded(self, work: Callable[[], None]) -> bool:
        """Run work with a healthy database connection; report whether an outage stopped it."""
        close_old_connections()
        try:
            work()
            return True
        except RETRYABLE as exc:
            logger.warning("%s: %s; will retry", type(exc).__name__, exc)
            return False

    @staticmethod
    def usable(message: Message) -> bool:
        error = message.error()
        if error is None:
            return True
        if error.code() != KafkaError._PARTITION_EOF:
            logger.warning("consumer error: %s", error)
        return False


def where(message: Message) -> tuple[str | None, int | None, int | None]:
    return message.topic(), message.partition(), message.offset()
