"""The scheduler's message handling: apply a batch of Kafka events to the database, then dispatch.

The consumer loop (workflows/consumer_loop.py) owns polling and offset commits; this module owns
what a batch means. One batch is one database transaction; the effects that leave the database
(Redis mirror, Celery tasks, task.dispatch events) happen after it commits, and the loop commits
the Kafka offsets only after that.
"""

import itertools
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis
from confluent_kafka import KafkaException, Message
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from redis import RedisError
from redis.exceptions import ResponseError

from workflows import bulk, dead_letters, kafka_io, metrics, mirror, outbox, signatures, task_queue
from workflows.conf import conf
from workflows.consumer_loop import Stalled, retryable
from workflows.dag import WorkflowSpec
from workflows.dead_letters import DeadLetter
from workflows.limits import LimitExceeded, json_size, over_limit
from workflows.messages import (
    TASK_COMPLETE,
    TASK_DISPATCH,
    WORKFLOW_START,
    InvalidMessage,
    TaskComplete,
    TaskPayload,
    WorkflowStart,
    decode,
    dispatch_of,
    encode,
    execution_id_of,
)
from workflows.models import (
    ACTIVE_NODE_STATUSES,
    Execution,
    ExecutionEvent,
    ExecutionStatus,
    NodeRun,
    NodeStatus,
)
from workflows.reconciler import EVERY_EXECUTION, Judge, Loss, Reconciler
from workflows.scheduling import bundles, ready_children, retry_delay, task_spread
from workflows.selectors import definition_spec
from workflows.templates import TemplateResolutionError, TemplateSizeError, resolve

logger = logging.getLogger(__name__)
MAX_LOST_ATTEMPTS = 5
RECONCILE_INTERVAL_S = 1.0
RELAY_INTERVAL_S = 0.02
SEND_RETRY_BACKOFF_S = 0.2
SENT_MARKER_PREFIX = "wf:sent:"
SENT_MARKER_TTL_S = 3600
WAITING_TASKS_FRESH_S = 1.0
MAX_SEND_RETRY_BACKOFF_S = 5.0


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


@dataclass
class Dispatch:
    """A node to hand to a worker once the batch's transaction has committed."""

    payload: TaskPayload
    countdown_s: float = 0.0


@dataclass
class Queued:
    """A node marked QUEUED in this batch, whose templates are resolved once all events applied."""

    execution: Execution
    node: NodeRun
    countdown_s: float


NODE_FIELDS = [
    "status",
    "attempt",
    "pending_deps",
    "config",
    "output",
    "error",
    "worker",
    "queued_at",
    "started_at",
    "finished_at",
    "lost_attempts",
]
EXECUTION_FIELDS = ["status", "error", "started_at", "finished_at", "completed_nodes", "failed_nodes"]
EVENT_FIELDS = ["execution", "at", "kind", "node_id", "detail"]


@dataclass
class Batch:
    """One transaction's working set: executions and node rows read once, changed in memory,
    written together; plus the history to record and the tasks to send after commit."""

    executions: dict[str, Execution] = field(default_factory=dict)
    nodes: dict[str, dict[str, NodeRun]] = field(default_factory=dict)
    dirty: dict[int, NodeRun] = field(default_factory=dict)
    counted: dict[int, NodeRun] = field(default_factory=dict)
    mirrored: dict[str, dict[str, NodeRun]] = field(default_factory=dict)
    queued: list[Queued] = field(default_factory=list)
    dispatches: list[Dispatch] = field(default_factory=list)
    history: list[ExecutionEvent] = field(default_factory=list)

    def lock_executions(self, execution_ids: Iterable[str]) -> None:
        """Lock and load, in one query, the executions this batch has not loaded yet."""
        missing = {execution_id for execution_id in execution_ids if execution_id not in self.executions}
        if missing:
            for execution in bulk.locked(Execution, missing):
                self.executions[str(execution.pk)] = execution
                self.nodes[str(execution.pk)] = {}
                self.mirrored[str(execution.pk)] = {}

    def execution(self, execution_id: str) -> Execution | None:
        self.lock_executions([execution_id])
        return self.executions.get(execution_id)

    def load(self, wanted: Mapping[str, Iterable[str]]) -> None:
        """Read, in one query, the rows of these nodes (by execution id) not read yet."""
        missing = {
            execution_id: [node_id for node_id in set(node_ids) if node_id not in self.nodes[execution_id]]
            for execution_id, node_ids in wanted.items()
        }
        missing = {execution_id: node_ids for execution_id, node_ids in missing.items() if node_ids}
        if missing:
            for row in bulk.node_rows(missing):
                self.nodes[str(row.execution_id)].setdefault(row.node_id, row)

    def load_nodes(self, execution: Execution, node_ids: Iterable[str]) -> list[NodeRun]:
        """The rows of these nodes, reading in one query those not read yet."""
        node_ids = list(node_ids)
        self.load({str(execution.pk): node_ids})
        cache = self.nodes[str(execution.pk)]
        return [cache[node_id] for node_id in node_ids if node_id in cache]

    def remember(self, execution: Execution, rows: Iterable[NodeRun]) -> list[NodeRun]:
        """Add rows to the cache; a row already read (and perhaps changed) wins over a new copy."""
        cache = self.nodes[str(execution.pk)]
        return [cache.setdefault(row.node_id, row) for row in rows]

    def node(self, execution: Execution, node_id: str) -> NodeRun | None:
        found = self.load_nodes(execution, [node_id])
        return found[0] if found else None

    def changed(self, node: NodeRun) -> None:
        """Write this row at the end of the batch, and show it in the mirror."""
        self.dirty[node.pk] = node
        self.mirrored[str(node.execution_id)][node.node_id] = node

    def counted_down(self, node: NodeRun) -> None:
        """Write this row's `pending_deps` at the end of the batch (the whole row if it changes
        otherwise too): most rows a batch touches are children that lost a dependency."""
        self.counted[node.pk] = node

    def only_counted(self) -> list[NodeRun]:
        return [node for pk, node in self.counted.items() if pk not in self.dirty]

    def record(self, execution: Execution, kind: str, node_id: str = "", **detail: Any) -> None:
        self.history.append(ExecutionEvent(execution=execution, kind=kind, node_id=node_id, detail=detail))

    def save(self) -> None:
        """Write everything the batch changed: a handful of statements, whatever its size."""
        bulk.execute_together(
            [
                bulk.update_statement(list(self.dirty.values()), NODE_FIELDS),
                bulk.update_statement(self.only_counted(), ["pending_deps"]),
                bulk.update_statement(list(self.executions.values()), EXECUTION_FIELDS),
                bulk.insert_statement(self.history, EVENT_FIELDS),
            ]
        )


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

        def apply(batch: Batch) -> None:
            batch.lock_executions([*starts, *(report.execution_id for report in reports)])
            self.prefetch(batch, reports)
            for execution_id in starts:
                self.start(execution_id, batch)
            for report in reports:
                self.complete(report, batch)

        self.run(apply)
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
                self.run(lambda batch: self.fail(execution_id, error, batch))
            except Exception as failure:  # its own data may trip this too: the letter still goes
                if retryable(failure):
                    raise
                logger.exception("could not fail execution %s after its poison message", execution_id)
        dead_letters.send([letter])

    def fail(self, execution_id: str, error: str, batch: Batch) -> None:
        execution = batch.execution(execution_id)
        if execution is not None and execution.status == ExecutionStatus.RUNNING:
            self.finish(execution, ExecutionStatus.FAILED, error, batch)

    def reconcile(self) -> None:
        """Give lost attempts a new one, and start executions whose workflow.start was lost.

        An attempt is lost only on evidence (workflows/reconciler.py): its worker died, it runs
        past its timeout on a wedged worker, or its task died with Redis's data; such an attempt
        does not use up the retry budget. Only executions on partitions this scheduler owns and
        has read to the end are considered: a report or a start still waiting in Kafka (after a
        restart, a rebalance, an outage) is not a loss.
        """
        losses = self.reconciler.losses(self.judge(TASK_COMPLETE))
        if losses:
            self.run(lambda batch: self.apply_losses(losses, batch))
        self.reconciler.applied()
        unstarted = self.reconciler.unstarted(self.judge(WORKFLOW_START))
        if unstarted:
            logger.warning("starting %d execution(s) whose workflow.start was lost", len(unstarted))
            self.run(lambda batch: [self.start(execution_id, batch) for execution_id in unstarted])

    def apply_losses(self, losses: list[Loss], batch: Batch) -> None:
        """Read the rows of every lost attempt in two queries (after a Redis restart there may be
        thousands), then apply each loss."""
        batch.lock_executions({loss.attempt[0] for loss in losses})
        wanted: dict[str, set[str]] = {}
        for execution_id, node_id, _ in (loss.attempt for loss in losses):
            if execution_id in batch.executions:
                wanted.setdefault(execution_id, set()).add(node_id)
        batch.load(wanted)
        for loss in losses:
            self.attempt_lost(loss, batch)

    def judge(self, topic: str) -> Callable[[], Judge]:
        return lambda: self.ownership(topic) if self.ownership is not None else EVERY_EXECUTION

    def run(self, apply: Callable[[Batch], object]) -> None:
        batch = Batch()
        with transaction.atomic():
            apply(batch)
            self.resolve_queued(batch)
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

    def start(self, execution_id: str, batch: Batch) -> None:
        """Queue every node that is ready: on the first start the roots, on a resume the nodes
        retry-from-failure reset. Idempotent: queued nodes are no longer PENDING."""
        execution = batch.execution(execution_id)
        if execution is None or execution.status != ExecutionStatus.RUNNING:
            return  # unknown, cancelled or finished
        if execution.started_at is None:
            execution.started_at = timezone.now()
            batch.record(execution, "started")
        spec = definition_spec(execution.definition_id)
        ready = NodeRun.objects.filter(execution=execution, status=NodeStatus.PENDING, pending_deps=0)
        for node in batch.remember(execution, ready):
            if node.status == NodeStatus.PENDING and node.pending_deps == 0:
                self.queue(execution, node, spec, batch)

    def complete(self, report: TaskComplete, batch: Batch) -> None:
        execution = batch.executions.get(report.execution_id)
        if execution is None:
            return
        node = batch.node(execution, report.node_id)
        if node is None or node.attempt != report.attempt or node.status not in ACTIVE_NODE_STATUSES:
            return  # duplicate, stale or out-of-order: already applied or superseded
        node.started_at = parse_datetime(report.started_at or "") or node.started_at
        node.finished_at = parse_datetime(report.finished_at or "") or timezone.now()
        node.worker = report.worker
        spec = definition_spec(execution.definition_id)
        if report.status == NodeStatus.COMPLETED:
            self.node_completed(execution, node, report.output, spec, batch)
        else:
            self.node_failed(execution, node, report.error or "unknown error", spec, batch)

    def attempt_lost(self, loss: Loss, batch: Batch) -> None:
        """Give a lost attempt a new one, unless it was reported meanwhile; after
        MAX_LOST_ATTEMPTS the node fails."""
        execution_id, node_id, attempt = loss.attempt
        execution = batch.execution(execution_id)
        node = batch.node(execution, node_id) if execution is not None else None
        if (
            execution is None
            or node is None
            or node.attempt != attempt
            or node.status not in ACTIVE_NODE_STATUSES
        ):
            return  # reported meanwhile
        error = f"attempt {attempt} lost: {loss.reason}"
        if execution.status != ExecutionStatus.RUNNING or node.lost_attempts >= MAX_LOST_ATTEMPTS:
            self.give_up(execution, node, error, batch)
            return
        node.lost_attempts += 1
        batch.record(execution, "node_lost", node.node_id, attempt=attempt, reason=loss.reason)
        self.queue(execution, node, definition_spec(execution.definition_id), batch)

    def node_completed(
        self, execution: Execution, node: NodeRun, output: Any, spec: WorkflowSpec, batch: Batch
    ) -> None:
        node.status, node.output, node.error = NodeStatus.COMPLETED, output, ""
        batch.changed(node)
        batch.record(execution, "node_completed", node.node_id, attempt=node.attempt)
        execution.completed_nodes += 1
        children = batch.load_nodes(execution, spec.children.get(node.node_id, ()))
        for child in children:
            child.pending_deps -= 1
            batch.counted_down(child)
        if execution.status != ExecutionStatus.RUNNING:
            return
        waiting = {child.node_id: child for child in children if child.status == NodeStatus.PENDING}
        unfinished = {node_id: child.pending_deps for node_id, child in waiting.items()}
        for node_id in ready_children(waiting, unfinished):
            self.queue(execution, waiting[node_id], spec, batch)
        if execution.completed_nodes == execution.total_nodes:
            self.finish(execution, ExecutionStatus.COMPLETED, "", batch)

    def node_failed(
        self, execution: Execution, node: NodeRun, error: str, spec: WorkflowSpec, batch: Batch
    ) -> None:
        node.error = error
        counted = node.attempt - node.budget_base - node.lost_attempts
        delay = retry_delay(spec.node(node.node_id).retry, counted, self.rng)
        if delay is not None and execution.status == ExecutionStatus.RUNNING:
            batch.record(
                execution,
                "node_retry",
                node.node_id,
                attempt=node.attempt,
                error=error,
                delay_s=round(delay, 3),
            )
            self.queue(execution, node, spec, batch, countdown_s=delay)
        else:
            self.give_up(execution, node, error, batch)

    def give_up(self, execution: Execution, node: NodeRun, error: str, batch: Batch) -> None:
        """The node failed for good: so does the execution, if it was still running."""
        node.status, node.error = NodeStatus.FAILED, error
        batch.changed(node)
        batch.record(execution, "node_failed", node.node_id, attempt=node.attempt, error=error)
        execution.failed_nodes += 1
        if execution.status == ExecutionStatus.RUNNING:
            self.finish(execution, ExecutionStatus.FAILED, f"node '{node.node_id}' failed: {error}", batch)

    def queue(
        self, execution: Execution, node: NodeRun, spec: WorkflowSpec, batch: Batch, countdown_s: float = 0.0
    ) -> None:
        """Mark the node QUEUED for a new attempt; resolve_queued sends it. Its time limit runs
        from when a worker starts it, not from now."""
        node.attempt += 1
        node.status = NodeStatus.QUEUED
        node.queued_at, node.started_at, node.finished_at = timezone.now(), None, None
        batch.changed(node)
        batch.record(execution, "node_queued", node.node_id, attempt=node.attempt)
        batch.queued.append(Queued(execution, node, countdown_s))

    def resolve_queued(self, batch: Batch) -> None:
        """Resolve the templates of every node queued in the batch, reading the outputs they need
        in one query per execution, and build the tasks; a reference that cannot be resolved
        fails its node."""
        for execution_id, queued in group_by_execution(batch.queued).items():
            execution = batch.executions[execution_id]
            spec = definition_spec(execution.definition_id)
            needed = {dep for item in queued for dep in needed_outputs(spec, item.node.node_id)}
            batch.load_nodes(execution, needed)
            outputs = {
                node_id: node.output
                for node_id, node in batch.nodes[execution_id].items()
                if node_id in needed and node.status == NodeStatus.COMPLETED
            }
            sizes: dict[str, int] = {}
            for item in queued:
                self.build_task(item, spec, outputs, sizes, batch)

    def build_task(
        self, item: Queued, spec: WorkflowSpec, outputs: dict[str, Any], sizes: dict[str, int], batch: Batch
    ) -> None:
        """Resolve the node's templates and build its task, or fail the node when a template
        cannot be resolved or the config or the whole payload is over its limit. `sizes` keeps
        the outputs measured in this batch (by node id), so each is measured at most once."""
        execution, node = item.execution, item.node
        node_spec = spec.node(node.node_id)
        upstream = {dep: outputs.get(dep) for dep in node_spec.dependencies}
        try:
            node.config, config_bytes = resolved_config(node_spec.config, node_spec.references, outputs)
            check_payload(config_bytes, upstream, sizes)
        except (TemplateResolutionError, LimitExceeded) as exc:
            self.give_up(execution, node, str(exc), batch)
            return
        payload: TaskPayload = {
            "execution_id": str(execution.pk),
            "node_id": node.node_id,
            "position": node.position,
            "attempt": node.attempt,
            "handler": node.handler,
            "config": node.config,
            "upstream": upstream,
            "timeout_seconds": node_spec.timeout_seconds or conf().node_timeout_seconds,
        }
        batch.dispatches.append(Dispatch(payload=payload, countdown_s=item.countdown_s))

    def finish(self, execution: Execution, status: str, error: str, batch: Batch) -> None:
        """End the execution; nodes that can no longer run become SKIPPED."""
        execution.status, execution.error, execution.finished_at = status, error, timezone.now()
        batch.record(execution, status.lower(), error=error)
        if status != ExecutionStatus.FAILED:
            return
        cached = batch.nodes[str(execution.pk)]
        started = [node_id for node_id, node in cached.items() if node.status != NodeStatus.PENDING]
        NodeRun.objects.filter(execution=execution, status=NodeStatus.PENDING).exclude(
            node_id__in=started
        ).update(status=NodeStatus.SKIPPED)
        for node in cached.values():
            if node.status == NodeStatus.PENDING:
                node.status = NodeStatus.SKIPPED
                batch.changed(node)
        mirrored = batch.mirrored[str(execution.pk)]
        for node in NodeRun.objects.filter(execution=execution, status=NodeStatus.SKIPPED):
            mirrored.setdefault(node.node_id, node)

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
        """Fail, in a follow-up transaction, the node attempts whose effects were refused for good
        (and so their executions); an attempt reported or superseded meanwhile is left alone."""
        if not refused:
            return

        def apply(batch: Batch) -> None:
            batch.lock_executions(payload["execution_id"] for payload, _ in refused)
            for payload, error in refused:
                execution = batch.executions.get(payload["execution_id"])
                node = batch.node(execution, payload["node_id"]) if execution is not None else None
                if (
                    execution is not None
                    and node is not None
                    and node.attempt == payload["attempt"]
                    and node.status in ACTIVE_NODE_STATUSES
                ):
                    self.give_up(execution, node, error, batch)

        self.run(apply)


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
    more than `spread` (scheduling.bundles); a retry that waits gets a task of its own, with its
    countdown."""
    due = [dispatch.payload for dispatch in batch.dispatches if not dispatch.countdown_s]
    shared = bundles(due, spread, conf().max_nodes_per_task)
    return [
        *(task_queue.message(list(payloads)) for payloads in shared),
        *(task_queue.message([d.payload], d.countdown_s) for d in batch.dispatches if d.countdown_s),
    ]


def resolved_config(
    config: dict[str, Any], references: tuple[str, ...], outputs: Mapping[str, Any]
) -> tuple[dict[str, Any], int]:
    """The node's config with its templates resolved, and a bound on its size in bytes.

    A config without templates was bounded at submit (WORKFLOW_MAX_CONFIG_BYTES) and is not
    measured again; a templated one is resolved within the limit (TemplateSizeError stops a
    template repeated over a large output before the copies are made), then measured."""
    if not references:
        return config, conf().max_config_bytes
    limit, setting = conf().max_resolved_config_bytes, "WORKFLOW_MAX_RESOLVED_CONFIG_BYTES"
    try:
        resolved = resolve(config, outputs, max_inserted_bytes=limit)
    except TemplateSizeError:
        raise LimitExceeded(
            f"config after templates is over the limit of {limit:,} bytes ({setting}): its templates "
            f"insert more than that"
        ) from None
    size = json_size(resolved)
    if size > limit:
        raise LimitExceeded(over_limit("config after templates", size, limit, setting))
    assert isinstance(resolved, dict)
    return resolved, size


def check_payload(config_bytes: int, upstream: Mapping[str, Any], sizes: dict[str, int]) -> None:
    """Raise LimitExceeded when the task payload (config plus the upstream outputs it carries) is
    over its bound. Outputs are bounded by the worker (WORKFLOW_MAX_OUTPUT_BYTES), so they are
    measured only when that many maximal outputs could exceed the bound: with the default
    limits, never for a node of 15 dependencies or fewer."""
    limit = conf().max_node_payload_bytes
    if config_bytes + len(upstream) * conf().max_output_bytes <= limit:
        return
    total = config_bytes
    for node_id, output in upstream.items():
        if node_id not in sizes:
            sizes[node_id] = json_size(output)
        total += sizes[node_id]
    if total > limit:
        what = "the task payload (config and upstream outputs)"
        raise LimitExceeded(over_limit(what, total, limit, "WORKFLOW_MAX_NODE_PAYLOAD_BYTES"))


def needed_outputs(spec: WorkflowSpec, node_id: str) -> set[str]:
    """The nodes whose outputs a node's task carries: its dependencies and what its templates read."""
    node_spec = spec.node(node_id)
    return {*node_spec.dependencies, *node_spec.references}


def group_by_execution(queued: Iterable[Queued]) -> dict[str, list[Queued]]:
    grouped: dict[str, list[Queued]] = {}
    for item in queued:
        grouped.setdefault(str(item.execution.pk), []).append(item)
    return grouped
