"""The Scheduler: the strategy the consumer loop (workflows/scheduler/loop.py) calls.

It decodes a batch of workflow.start and task.complete events, applies them in one transaction
(workflows/scheduler/apply.py), sends the effects after commit (effects.py), and between
batches relays the outbox and applies the losses the reconciler finds. The loop commits the Kafka
offsets only after that.
"""

import itertools
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterable

from confluent_kafka import Message
from django.db import transaction
from redis import RedisError

from workflows import dead_letters, kafka_io, outbox, signatures, task_queue
from workflows.conf import conf
from workflows.core.packing import task_spread
from workflows.dead_letters import DeadLetter
from workflows.messages import (
    TASK_COMPLETE,
    WORKFLOW_START,
    InvalidMessage,
    TaskComplete,
    TaskPayload,
    WorkflowStart,
    decode,
    execution_id_of,
)
from workflows.scheduler import apply
from workflows.scheduler.batch import Batch
from workflows.scheduler.effects import (
    SENT_MARKER_PREFIX,
    announcement,
    mirror_and_enqueue,
    queue_entries,
    retry_until_done,
)
from workflows.scheduler.loop import retryable
from workflows.scheduler.payloads import resolve_queued
from workflows.scheduler.reconciler import EVERY_EXECUTION, Judge, Reconciler
from workflows.selectors import definition_spec

logger = logging.getLogger(__name__)
RECONCILE_INTERVAL_S = 1.0
RELAY_INTERVAL_S = 0.02
WAITING_TASKS_FRESH_S = 1.0


class Scheduler:
    """Applies workflow.start and task.complete events; the consumer loop calls handle_batch."""

    topics = (WORKFLOW_START, TASK_COMPLETE)

    def __init__(
        self,
        rng: random.Random | None = None,
        ownership: Callable[[str], Judge] | None = None,
    ) -> None:
        """`ownership(topic)` tells which executions' partitions of that topic this scheduler owns
        and has read to the end; without it, the reconciler considers every execution."""
        self.rng = rng or random.Random()
        self.ownership = ownership
        self.reconciler = Reconciler(
            task_queue.client, task_queue.queue_key, conf().worker_dead_after_seconds
        )
        self.next_relay_at = 0.0
        self.next_reconcile_at = 0.0
        self.waiting_tasks = 0  # in the Celery queue when the last batch pushed its tasks ...
        self.waiting_seen_at = 0.0  # ... at this time.monotonic()

    def idle(self) -> None:
        """Between batches: relay the outbox now and then, and look for lost attempts less often."""
        now = time.monotonic()
        if now >= self.next_relay_at:
            self.next_relay_at = now + RELAY_INTERVAL_S
            outbox.relay()
        if now >= self.next_reconcile_at:
            self.next_reconcile_at = now + RECONCILE_INTERVAL_S
            self.reconcile()

    def recently_waiting(self) -> int:
        """The tasks waiting in the queue at the last push, unless that is too old to tell: after
        a quiet spell the queue has drained, and idle workers should get spread tasks."""
        fresh = time.monotonic() - self.waiting_seen_at < WAITING_TASKS_FRESH_S
        return self.waiting_tasks if fresh else 0

    def handle_batch(self, messages: Iterable[Message]) -> None:
        """Apply a batch in one transaction, send what it dispatched, then dead-letter the
        messages that broke their contract (one flush for them all, before the offsets are
        committed)."""
        starts, reports, refused = self.decode(messages)

        def apply_events(batch: Batch) -> None:
            batch.lock_executions([*starts, *(report.execution_id for report in reports)])
            self.prefetch(batch, reports)
            for execution_id in starts:
                apply.start(execution_id, batch)
            for report in reports:
                apply.complete(report, batch, self.rng)

        self.run(apply_events)
        if refused:
            dead_letters.send(refused)

    def poisoned(self, message: Message, exc: Exception) -> None:
        """A message whose handling raised on its own, not for an outage: fail the execution it
        names (in a transaction of its own, so the rest of the batch stands) and dead-letter it
        with the exception."""
        cause = f"{type(exc).__name__}: {exc}"
        letter = DeadLetter.of_message(message, InvalidMessage("handler_error", cause))
        try:
            execution_id = execution_id_of(decode(message.value()))
        except InvalidMessage:
            execution_id = None
        if execution_id is not None:
            error = (
                f"the scheduler could not apply a message about this execution ({cause}); "
                f"the message is in the dead-letter topic, from {letter.where()}"
            )
            try:
                self.run(lambda batch: apply.fail(execution_id, error, batch))
            except Exception as failure:  # its own data may trip this too: the letter still goes
                if retryable(failure):
                    raise
                logger.exception("could not fail execution %s after its poison message", execution_id)
        dead_letters.send([letter])

    def reconcile(self) -> None:
        """Give lost attempts a new one, and start executions whose workflow.start was lost.

        An attempt is lost only on evidence (workflows/scheduler/reconciler.py): its worker died, it runs
        past its timeout on a wedged worker, or its task died with Redis's data; such an attempt
        does not use up the retry budget. Only executions on partitions this scheduler owns and
        has read to the end are considered: a report or a start still waiting in Kafka (after a
        restart, a rebalance, an outage) is not a loss.
        """
        losses = self.reconciler.losses(self.judge(TASK_COMPLETE))
        if losses:
            self.run(lambda batch: apply.apply_losses(losses, batch))
        self.reconciler.applied()
        unstarted = self.reconciler.unstarted(self.judge(WORKFLOW_START))
        if unstarted:
            logger.warning("starting %d execution(s) whose workflow.start was lost", len(unstarted))
            self.run(lambda batch: [apply.start(execution_id, batch) for execution_id in unstarted])

    def judge(self, topic: str) -> Callable[[], Judge]:
        return lambda: self.ownership(topic) if self.ownership is not None else EVERY_EXECUTION

    def run(self, work: Callable[[Batch], object]) -> None:
        batch = Batch()
        with transaction.atomic():
            work(batch)
            resolve_queued(batch)
            batch.save()
        self.send(batch)

    @staticmethod
    def decode(messages: Iterable[Message]) -> tuple[list[str], list[TaskComplete], list[DeadLetter]]:
        """Split a batch into starts and reports, validating every field; a message that breaks
        its contract is refused, to be dead-lettered."""
        starts: list[str] = []
        reports: list[TaskComplete] = []
        refused: list[DeadLetter] = []
        start_topic = conf().topic(WORKFLOW_START)
        for message in messages:
            try:
                topic = WORKFLOW_START if message.topic() == start_topic else TASK_COMPLETE
                data = decode(signatures.verified(topic, message.value(), message.headers()))
                if topic == WORKFLOW_START:
                    starts.append(WorkflowStart.from_json(data).execution_id)
                else:
                    reports.append(TaskComplete.from_json(data))
            except InvalidMessage as exc:
                refused.append(DeadLetter.of_message(message, exc))
        return starts, reports, refused

    @staticmethod
    def prefetch(batch: Batch, reports: Iterable[TaskComplete]) -> None:
        """Read, in one query, the reported nodes and their children."""
        wanted: dict[str, set[str]] = {}
        for report in reports:
            execution = batch.executions.get(report.execution_id)
            if execution is not None:
                children = definition_spec(execution.definition_id).children.get(report.node_id, ())
                wanted.setdefault(report.execution_id, set()).update((report.node_id, *children))
        batch.load(wanted)

    def send(self, batch: Batch) -> None:
        """After commit: mirror the new state and enqueue the tasks, then announce the dispatches.

        Each effect is retried while it fails for a reason that passes, and never applied twice
        (see mirror_and_enqueue). A crash between the commit and the push leaves nodes QUEUED that
        no queue carries: see docs/reliability.md, "Loss is declared on evidence". A permanent
        refusal (Redis refusing the transaction, Kafka a message) fails the executions it belongs
        to, and the scheduler goes on with the next batch.
        """
        changes = [(execution, batch.mirrored[key].values()) for key, execution in batch.executions.items()]
        tasks = queue_entries(batch, task_spread(self.recently_waiting(), conf().min_tasks_per_batch))
        marker, attempts = f"{SENT_MARKER_PREFIX}{uuid.uuid4().hex}", itertools.count()

        def enqueue() -> None:
            waiting = mirror_and_enqueue(changes, tasks, marker, retrying=next(attempts) > 0)
            if waiting is not None:
                self.waiting_tasks, self.waiting_seen_at = waiting, time.monotonic()

        try:
            retry_until_done(enqueue)
        except RedisError as exc:
            logger.error("Redis refused a batch's transaction for good: %s", exc)
            refused = [(d.payload, f"Redis refused the node's task: {exc}") for d in batch.dispatches]
            self.fail_refused(refused)
            return
        if batch.dispatches:
            self.announce([dispatch.payload for dispatch in batch.dispatches])

    def announce(self, payloads: list[TaskPayload]) -> None:
        """Publish the task.dispatch announcements in one flush. Those Kafka refuses for good are
        sent again one by one (the broker refuses a whole request for one message in it), and
        the nodes of those refused again fail."""
        announcements = [announcement(payload) for payload in payloads]
        refused = retry_until_done(lambda: kafka_io.publish(announcements))
        if not refused:
            return
        failures = []
        for index in refused:
            alone = retry_until_done(lambda index=index: kafka_io.publish([announcements[index]]))
            if alone:
                error = f"Kafka refused the node's task.dispatch announcement: {alone[0].str()}"
                logger.error("%s/%s: %s", payloads[index]["execution_id"], payloads[index]["node_id"], error)
                failures.append((payloads[index], error))
        self.fail_refused(failures)

    def fail_refused(self, refused: list[tuple[TaskPayload, str]]) -> None:
        """Fail, in a follow-up transaction, the node attempts whose effects were refused for good."""
        if refused:
            self.run(lambda batch: apply.give_up_refused(refused, batch))
