"""The consumer loop and the scheduler's post-commit effects survive refusals and outages.

Two crashes the fault tests found (docs/reliability.md, "Fixed" 1 and 2), pinned without services.
"""

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from django.db import DatabaseError
from redis.exceptions import ConnectionError as RedisConnectionError

from workflows.conf import conf
from workflows.scheduler import effects
from workflows.scheduler.loop import STALLED_EXIT_CODE, ConsumerLoop, Stalled


class RefusingConsumer:
    """Hands out one batch, then nothing; refuses every commit, as during a rebalance."""

    def __init__(self, batch: list[Any]) -> None:
        self.batches = [batch]
        self.commits = 0

    def consume(self, num_messages: int, timeout: float) -> list[Any]:
        return self.batches.pop() if self.batches else []

    def commit(self, asynchronous: bool = True) -> None:
        self.commits += 1
        raise KafkaException(KafkaError(KafkaError.ILLEGAL_GENERATION))


class GoodMessage:
    def error(self) -> None:
        return None


@pytest.mark.django_db  # the loop checks its database connection between batches
def test_a_refused_offset_commit_leaves_the_scheduler_loop_running() -> None:
    """A commit refused mid-rebalance (or while the coordinator reloads after a broker restart)
    used to escape ConsumerLoop.run and end the scheduler; the batch is re-applied instead."""
    handled: list[Any] = []
    consumer = RefusingConsumer([GoodMessage()])
    loop = ConsumerLoop(consumer, handled.append)  # type: ignore[arg-type]
    loop.turn()
    loop.turn()
    assert len(handled) == 1 and consumer.commits == 1


def test_batch_effects_are_retried_while_redis_is_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    """The mirror and the Celery queue share one Redis transaction after each batch; an
    unreachable Redis delays the batch's effects instead of ending the scheduler."""
    monkeypatch.setattr(effects, "SEND_RETRY_BACKOFF_S", 0.01)
    outage = [RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")] * 3

    def enqueue() -> None:
        if outage:
            raise outage.pop()

    effects.retry_until_done(enqueue)
    assert not outage


class Consumed:
    """A message as the loop sees it: a value and where it came from."""

    def __init__(self, value: bytes, offset: int) -> None:
        self._value, self._offset = value, offset

    def error(self) -> None:
        return None

    def value(self) -> bytes:
        return self._value

    def topic(self) -> str:
        return "task.complete"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset


class OneBatchConsumer(RefusingConsumer):
    """Hands out one batch, then nothing; takes every commit."""

    def commit(self, asynchronous: bool = True) -> None:
        self.commits += 1


def trips_on(poison: bytes, applied: list[list[bytes]]) -> Any:
    """A handle_batch with a bug that one message's data triggers: a batch holding it raises."""

    def handle_batch(messages: list[Consumed]) -> None:
        values = [message.value() for message in messages]
        if poison in values:
            raise KeyError(poison)
        applied.append(values)

    return handle_batch


@pytest.mark.django_db
def test_a_batch_that_raises_for_good_is_applied_message_by_message_and_the_culprit_set_aside() -> None:
    """A non-retryable exception in a batch used to escape the loop: the scheduler exited and,
    restarted, read the same uncommitted batch and died again."""
    applied: list[list[bytes]] = []
    poisoned: list[tuple[bytes, Exception]] = []
    batch = [Consumed(b"a", 0), Consumed(b"poison", 1), Consumed(b"c", 2)]
    consumer = OneBatchConsumer(batch)
    loop = ConsumerLoop(
        consumer,  # type: ignore[arg-type]
        trips_on(b"poison", applied),
        on_poison=lambda message, exc: poisoned.append((message.value(), exc)),
    )
    loop.turn()
    assert applied == [[b"a"], [b"c"]]
    assert [(value, type(exc)) for value, exc in poisoned] == [(b"poison", KeyError)]
    assert consumer.commits == 1  # past the whole batch, the poison included


@pytest.mark.django_db
def test_an_outage_longer_than_the_give_up_time_exits_non_zero_without_committing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A batch failing with retryable errors used to be retried in place forever, the scheduler
    alive but getting nowhere; now it exits for its supervisor to restart it."""
    monkeypatch.setattr("workflows.scheduler.loop.RETRY_BACKOFF_S", 0.01)
    attempts: list[int] = []

    def database_down(messages: list[Consumed]) -> None:
        attempts.append(len(messages))
        raise DatabaseError("server closed the connection unexpectedly")

    consumer = OneBatchConsumer([Consumed(b"a", 0)])
    loop = ConsumerLoop(consumer, database_down, give_up_s=0.2)  # type: ignore[arg-type]
    with pytest.raises(Stalled) as stalled:
        loop.turn()
    assert stalled.value.code == STALLED_EXIT_CODE != 0
    assert len(attempts) > 1 and consumer.commits == 0


@pytest.mark.django_db
def test_the_loop_notes_its_turns_and_progress_for_the_heartbeat() -> None:
    consumer = OneBatchConsumer([Consumed(b"a", 0)])
    loop = ConsumerLoop(consumer, lambda messages: None)  # type: ignore[arg-type]
    loop.progress.progressed_at = loop.progress.turned_at = 0.0
    loop.turn()
    assert loop.progress.progressed_at > 0 and loop.progress.turned_at > 0


def test_batch_effects_that_cannot_be_sent_for_the_give_up_time_exit_non_zero(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    """Effects that could not be sent used to be retried in place forever (a wedged scheduler)."""
    monkeypatch.setattr(effects, "SEND_RETRY_BACKOFF_S", 0.01)
    settings.WORKFLOWS = {**settings.WORKFLOWS, "SCHEDULER_GIVE_UP_SECONDS": "0.1"}
    conf.cache_clear()
    attempts: list[int] = []

    def enqueue() -> None:
        attempts.append(1)
        raise RedisConnectionError("Connection refused.")

    try:
        with pytest.raises(Stalled) as stalled:
            effects.retry_until_done(enqueue)
    finally:
        conf.cache_clear()
    assert stalled.value.code == STALLED_EXIT_CODE and len(attempts) > 1
