"""The consumer loop and the scheduler's post-commit effects survive refusals and outages.

Two crashes the fault tests found (docs/reliability.md, "Fixed" 1 and 2), pinned without services.
"""

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from redis.exceptions import ConnectionError as RedisConnectionError

from workflows import scheduler
from workflows.consumer_loop import ConsumerLoop


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
    monkeypatch.setattr(scheduler, "SEND_RETRY_BACKOFF_S", 0.01)
    outage = [RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")] * 3

    def enqueue() -> None:
        if outage:
            raise outage.pop()

    scheduler.retry_until_done(enqueue)
    assert not outage
