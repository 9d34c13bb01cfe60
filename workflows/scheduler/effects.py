"""What leaves the database after a batch commits: the Redis mirror and the Celery tasks (one
MULTI, never applied twice thanks to a marker), and the task.dispatch announcements on Kafka."""

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from confluent_kafka import KafkaException
from redis import RedisError
from redis.exceptions import ResponseError

from workflows import kafka_io, metrics, mirror, task_queue
from workflows.conf import conf
from workflows.core.packing import bundles
from workflows.messages import TASK_DISPATCH, TaskPayload, dispatch_of, encode
from workflows.scheduler.batch import Batch
from workflows.scheduler.loop import Stalled

logger = logging.getLogger(__name__)
SEND_RETRY_BACKOFF_S = 0.2
MAX_SEND_RETRY_BACKOFF_S = 5.0
SENT_MARKER_PREFIX = "wf:sent:"
SENT_MARKER_TTL_S = 3600


T = TypeVar("T")


def retry_until_done(work: Callable[[], T]) -> T:
    """Retry effects that must happen once the database has committed, while they fail for a
    reason that passes (Redis or Kafka down, a timeout, a full queue), for
    WORKFLOW_SCHEDULER_GIVE_UP_SECONDS at most: then the scheduler exits (Stalled) to be
    restarted. A permanent refusal is raised at once."""
    backoff, first_failure = SEND_RETRY_BACKOFF_S, time.monotonic()
    while True:
        try:
            return work()
        except (RedisError, KafkaException) as exc:
            if not is_transient(exc):
                raise
            failing_s = time.monotonic() - first_failure
            if failing_s >= conf().scheduler_give_up_seconds:
                logger.error("sending batch effects failed for %.0f s (%s); exiting", failing_s, exc)
                raise Stalled from exc
            logger.warning("sending batch effects failed (%s); retrying in %.1fs", exc, backoff)
            time.sleep(backoff)
            backoff = min(backoff * 2, MAX_SEND_RETRY_BACKOFF_S)


# Redis replies that depend on the data sent, so that sending it again fails again. Any other
# Redis error (a connection problem, LOADING, MISCONF with a full disk, READONLY or MASTERDOWN
# while failing over, OOM until workers drain the queue, EXECABORT carrying one of these) passes
# with time: retrying, and exiting after WORKFLOW_SCHEDULER_GIVE_UP_SECONDS, beats failing the
# batch's executions.
REDIS_DATA_REFUSALS = ("WRONGTYPE", "exceeds maximum allowed size", "invalid bulk length")


def is_transient(exc: RedisError | KafkaException) -> bool:
    """Whether sending again can succeed. Kafka: kafka_io.is_transient_exception; Redis: every
    error but a refusal of the data itself (REDIS_DATA_REFUSALS)."""
    if isinstance(exc, KafkaException):
        return kafka_io.is_transient_exception(exc)
    return not (isinstance(exc, ResponseError) and any(text in str(exc) for text in REDIS_DATA_REFUSALS))


def announcement(payload: TaskPayload) -> tuple[str, str, bytes]:
    """The task.dispatch message of a dispatched node."""
    return (TASK_DISPATCH, payload["execution_id"], encode(dispatch_of(payload)))


def mirror_and_enqueue(
    changes: mirror.Changes, tasks: list[str], marker: str, *, retrying: bool
) -> int | None:
    """Write the mirror (and the metrics of the nodes that finished) and push the tasks: one MULTI
    when the broker is the mirror's Redis (the default), else the mirror's transaction, then the
    queue's. Return how many tasks were waiting in the queue before the push (None when a retry
    found the batch applied already).

    Each transaction also sets `marker`, unique to the batch. A retry first looks for it: when
    the EXEC went through but its reply was lost, repeating it would put a node a worker has
    claimed back to QUEUED and queue its task a second time, and the claim would let the copy run.
    """

    def write_mirror(pipe: redis.client.Pipeline) -> None:
        mirror.write_changes(pipe, changes)
        metrics.add_outcomes(pipe, (node for _, nodes in changes for node in nodes))

    waiting_at = 0

    def push_tasks(pipe: redis.client.Pipeline) -> None:
        nonlocal waiting_at
        waiting_at = task_queue.push(pipe, tasks)

    if task_queue.client() is mirror.client():
        replies = once(mirror.client(), marker, retrying, write_mirror, push_tasks)
    else:
        once(mirror.client(), marker, retrying, write_mirror)
        replies = once(task_queue.client(), marker, retrying, push_tasks)
    if replies is None:
        return None
    waiting = replies[waiting_at]
    return waiting if isinstance(waiting, int) else 0


def once(
    client: redis.Redis, marker: str, retrying: bool, *writes: Callable[[redis.client.Pipeline], None]
) -> list[Any] | None:
    """Apply the writes in one MULTI that also sets the marker, unless a retry finds it set;
    return the MULTI's replies, or None when it was applied already."""
    if retrying and client.exists(marker):
        return None
    pipe = client.pipeline(transaction=True)
    for write in writes:
        write(pipe)
    pipe.set(marker, 1, ex=SENT_MARKER_TTL_S)
    replies = pipe.execute(raise_on_error=False)
    for reply in replies:  # a command Redis refused (a key of the wrong type): retrying cannot help
        if isinstance(reply, Exception):
            logger.error("Redis refused a command of a batch's transaction: %s", reply)
    return replies


def queue_entries(batch: Batch, spread: int) -> list[str]:
    """The Celery tasks that carry a batch's dispatches: nodes due now share tasks when there are
    more than `spread` (core.packing.bundles); a retry that waits gets a task of its own, with its
    countdown."""
    due = [dispatch.payload for dispatch in batch.dispatches if not dispatch.countdown_s]
    shared = bundles(due, spread, conf().max_nodes_per_task)
    return [
        *(task_queue.message(list(payloads)) for payloads in shared),
        *(task_queue.message([d.payload], d.countdown_s) for d in batch.dispatches if d.countdown_s),
    ]
