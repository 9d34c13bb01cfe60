"""The scheduler's message handling: apply a batch of Kafka events to the database, then dispatch.

The consumer loop (workflows/consumer_loop.py) owns polling and offset commits; this module owns
what a batch means. One batch is one database transaction; the effects that leave the database
(Redis mirror, Celery tasks, task.dispatch events) happen after it commits, and the loop commits
the Kafka offsets only after that.
"""

import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from functools import lru_cache
from typing import Any

from confluent_kafka import KafkaException, Message
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from kombu.exceptions import OperationalError as BrokerError
from redis import RedisError

from workers.handlers import handler_names
from workflows import kafka_io, metrics, mirror, outbox
from workflows.conf import conf
from workflows.dag import WorkflowSpec, parse_workflow
from workflows.events import (
    RUN_NODE_TASK,
    TASK_COMPLETE,
    TASK_DISPATCH,
    WORKFLOW_START,
    TaskComplete,
    decode,
    encode,
    task_id,
)
from workflows.models import (
    ACTIVE_NODE_STATUSES,
    Execution,
    ExecutionEvent,
    ExecutionStatus,
    NodeRun,
    NodeStatus,
    WorkflowDefinition,
)
from workflows.scheduling import ready_children, retry_delay
from workflows.templates import TemplateResolutionError, resolve
from workflowsite.celery import app as celery_app

logger = logging.getLogger(__name__)
SPEC_CACHE_SIZE = 256
LEASE_GRACE_S = 5.0
MAX_LOST_ATTEMPTS = 5
RECONCILE_BATCH_SIZE = 500
RECONCILE_INTERVAL_S = 1.0
SEND_RETRY_BACKOFF_S = 0.2
MAX_SEND_RETRY_BACKOFF_S = 5.0


def retry_until_done(work: Callable[[], None]) -> None:
    """Retry effects that must happen once the database has committed (Redis, Kafka down).

    Celery reports an unreachable broker as kombu's OperationalError, not as a RedisError.
    """
    backoff = SEND_RETRY_BACKOFF_S
    while True:
        try:
            work()
            return
        except (RedisError, KafkaException, BrokerError) as exc:
            logger.warning("sending batch effects failed (%s); retrying in %.1fs", exc, backoff)
            time.sleep(backoff)
            backoff = min(backoff * 2, MAX_SEND_RETRY_BACKOFF_S)


@lru_cache(maxsize=SPEC_CACHE_SIZE)
def load_spec(definition_id: str) -> WorkflowSpec:
    """Parse a stored definition once per process; definitions never change."""
    stored = WorkflowDefinition.objects.only("spec").get(pk=definition_id).spec
    return parse_workflow(stored, handlers=handler_names())


@dataclass
class Dispatch:
    """A node to hand to a worker once the batch's transaction has committed."""

    payload: dict[str, Any]
    countdown_s: float = 0.0


@dataclass
class Batch:
    """What one batch changed: the rows to mirror, the tasks to enqueue, the history to write."""

    executions: dict[str, Execution] = field(default_factory=dict)
    changed_nodes: dict[str, dict[str, NodeRun]] = field(default_factory=dict)
    dispatches: list[Dispatch] = field(default_factory=list)
    history: list[ExecutionEvent] = field(default_factory=list)

    def execution(self, execution_id: str) -> Execution | None:
        """The execution, locked for this transaction, loaded once per batch."""
        if execution_id not in self.executions:
            found = Execution.objects.select_for_update().filter(pk=execution_id).first()
            if found is None:
                return None
            self.executions[execution_id] = found
            self.changed_nodes[execution_id] = {}
        return self.executions[execution_id]

    def node_changed(self, node: NodeRun) -> None:
        self.changed_nodes[str(node.execution_id)][node.node_id] = node

    def record(self, execution: Execution, kind: str, node_id: str = "", **detail: Any) -> None:
        self.history.append(ExecutionEvent(execution=execution, kind=kind, node_id=node_id, detail=detail))


class Scheduler:
    """Applies workflow.start and task.complete events; the consumer loop calls handle_batch."""

    topics = (WORKFLOW_START, TASK_COMPLETE)

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()
        self.next_reconcile_at = 0.0

    def idle(self) -> None:
        """Between batches: relay the outbox; now and then, look for lost attempts."""
        outbox.relay()
        if time.monotonic() >= self.next_reconcile_at:
            self.next_reconcile_at = time.monotonic() + RECONCILE_INTERVAL_S
            self.reconcile()

    def handle_batch(self, messages: Iterable[Message]) -> None:
        """Apply a batch in one transaction, then send what it dispatched."""
        self.run(lambda batch: [self.apply(message, batch) for message in messages])

    def reconcile(self) -> None:
        """Give lost attempts a new one: nodes whose lease expired without a report.

        A lease covers the node's timeout plus a grace period, so it expires only when the
        worker died or Redis lost the queued task; such an attempt does not use up the retry
        budget (the worker itself reports timeouts as failures).
        """
        expired = list(
            NodeRun.objects.filter(
                status__in=ACTIVE_NODE_STATUSES, lease_expires_at__lt=timezone.now()
            ).values_list("execution_id", "node_id", "attempt")[:RECONCILE_BATCH_SIZE]
        )
        if expired:
            self.run(lambda batch: [self.lease_expired(str(e), n, a, batch) for e, n, a in expired])

    def run(self, apply: Callable[[Batch], object]) -> None:
        batch = Batch()
        with transaction.atomic():
            apply(batch)
            for execution in batch.executions.values():
                execution.save()
            ExecutionEvent.objects.bulk_create(batch.history)
        self.send(batch)

    def apply(self, message: Message, batch: Batch) -> None:
        """Apply one message; a malformed one is logged and skipped, never retried forever."""
        try:
            data = decode(message.value())
            if message.topic() == conf().topic(WORKFLOW_START):
                self.start(str(data["execution_id"]), batch)
            else:
                self.complete(TaskComplete.from_json(data), batch)
        except (ValueError, KeyError, TypeError) as exc:
            logger.error(
                "skipping malformed message at %s[%s]@%s: %s",
                message.topic(),
                message.partition(),
                message.offset(),
                exc,
            )

    def start(self, execution_id: str, batch: Batch) -> None:
        """Dispatch every node that is ready: on the first start the roots, on a resume the
        nodes retry-from-failure reset. Idempotent: dispatched nodes are no longer PENDING."""
        execution = batch.execution(execution_id)
        if execution is None or execution.status != ExecutionStatus.RUNNING:
            return  # unknown, cancelled or finished
        if execution.started_at is None:
            execution.started_at = timezone.now()
            batch.record(execution, "started")
        spec = load_spec(str(execution.definition_id))
        for node in NodeRun.objects.filter(execution=execution, status=NodeStatus.PENDING, pending_deps=0):
            self.dispatch(execution, node, spec, batch)

    def complete(self, report: TaskComplete, batch: Batch) -> None:
        execution = batch.execution(report.execution_id)
        if execution is None:
            return
        node = NodeRun.objects.filter(execution=execution, node_id=report.node_id).first()
        if node is None or node.attempt != report.attempt or node.status not in ACTIVE_NODE_STATUSES:
            return  # duplicate, stale or out-of-order: already applied or superseded
        node.started_at = parse_datetime(report.started_at or "") or node.started_at
        node.finished_at = parse_datetime(report.finished_at or "") or timezone.now()
        node.worker = report.worker
        node.lease_expires_at = None
        spec = load_spec(str(execution.definition_id))
        if report.status == NodeStatus.COMPLETED:
            self.node_completed(execution, node, report.output, spec, batch)
        else:
            self.node_failed(execution, node, report.error or "unknown error", spec, batch)

    def lease_expired(self, execution_id: str, node_id: str, attempt: int, batch: Batch) -> None:
        execution = batch.execution(execution_id)
        node = NodeRun.objects.filter(execution_id=execution_id, node_id=node_id, attempt=attempt).first()
        if execution is None or node is None or node.status not in ACTIVE_NODE_STATUSES:
            return  # reported meanwhile
        error = f"attempt {attempt} lost: no report before its lease expired"
        if execution.status != ExecutionStatus.RUNNING or node.lost_attempts >= MAX_LOST_ATTEMPTS:
            self.give_up(execution, node, error, batch)
            return
        node.lost_attempts += 1
        batch.record(execution, "node_lost", node.node_id, attempt=attempt)
        self.dispatch(execution, node, load_spec(str(execution.definition_id)), batch)

    def node_completed(
        self, execution: Execution, node: NodeRun, output: Any, spec: WorkflowSpec, batch: Batch
    ) -> None:
        node.status, node.output, node.error = NodeStatus.COMPLETED, output, ""
        node.save()
        batch.node_changed(node)
        batch.record(execution, "node_completed", node.node_id, attempt=node.attempt)
        execution.completed_nodes += 1
        children = spec.children.get(node.node_id, ())
        if children:
            NodeRun.objects.filter(execution=execution, node_id__in=children).update(
                pending_deps=F("pending_deps") - 1
            )
        if execution.status != ExecutionStatus.RUNNING:
            return
        if children:
            waiting = NodeRun.objects.filter(
                execution=execution, node_id__in=children, status=NodeStatus.PENDING
            )
            counts = {child.node_id: child.pending_deps for child in waiting}
            ready = set(ready_children(children, counts))
            for child in waiting:
                if child.node_id in ready:
                    self.dispatch(execution, child, spec, batch)
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
            self.dispatch(execution, node, spec, batch, countdown_s=delay)
        else:
            self.give_up(execution, node, error, batch)

    def give_up(self, execution: Execution, node: NodeRun, error: str, batch: Batch) -> None:
        """The node failed for good: so does the execution, if it was still running."""
        node.status, node.error, node.lease_expires_at = NodeStatus.FAILED, error, None
        node.save()
        batch.node_changed(node)
        batch.record(execution, "node_failed", node.node_id, attempt=node.attempt, error=error)
        execution.failed_nodes += 1
        if execution.status == ExecutionStatus.RUNNING:
            self.finish(execution, ExecutionStatus.FAILED, f"node '{node.node_id}' failed: {error}", batch)

    def dispatch(
        self, execution: Execution, node: NodeRun, spec: WorkflowSpec, batch: Batch, countdown_s: float = 0.0
    ) -> None:
        """Resolve the node's templates, mark it QUEUED for a new attempt, and queue the task."""
        node_spec = spec.node(node.node_id)
        needed = set(node_spec.references) | set(node_spec.dependencies)
        outputs = dict(
            NodeRun.objects.filter(execution=execution, node_id__in=needed).values_list("node_id", "output")
        )
        node.attempt += 1
        node.queued_at, node.started_at, node.finished_at = timezone.now(), None, None
        try:
            node.config = resolve(node_spec.config, outputs)
        except TemplateResolutionError as exc:
            self.give_up(execution, node, str(exc), batch)
            return
        timeout_s = node_spec.timeout_seconds or conf().node_timeout_seconds
        node.status = NodeStatus.QUEUED
        node.lease_expires_at = node.queued_at + timedelta(seconds=countdown_s + timeout_s + LEASE_GRACE_S)
        node.save()
        batch.node_changed(node)
        batch.record(execution, "node_queued", node.node_id, attempt=node.attempt)
        payload = {
            "execution_id": str(execution.pk),
            "node_id": node.node_id,
            "position": node.position,
            "attempt": node.attempt,
            "handler": node.handler,
            "config": node.config,
            "upstream": {dep: outputs.get(dep) for dep in node_spec.dependencies},
            "input": execution.input,
            "timeout_seconds": timeout_s,
        }
        batch.dispatches.append(Dispatch(payload=payload, countdown_s=countdown_s))

    def finish(self, execution: Execution, status: str, error: str, batch: Batch) -> None:
        """End the execution; nodes that can no longer run become SKIPPED."""
        execution.status, execution.error, execution.finished_at = status, error, timezone.now()
        batch.record(execution, status.lower(), error=error)
        if status == ExecutionStatus.FAILED:
            pending = list(NodeRun.objects.filter(execution=execution, status=NodeStatus.PENDING))
            NodeRun.objects.filter(pk__in=[node.pk for node in pending]).update(status=NodeStatus.SKIPPED)
            for node in pending:
                node.status = NodeStatus.SKIPPED
                batch.node_changed(node)

    def send(self, batch: Batch) -> None:
        """After commit: mirror the new state, enqueue the tasks, announce the dispatches.

        Each effect is retried on its own until it succeeds, so a Redis or Kafka outage delays
        a batch but never repeats an effect that already happened. A crash here is covered by
        the leases: the reconciler dispatches again what was never enqueued.
        """
        retry_until_done(
            lambda: mirror.publish(
                (execution, batch.changed_nodes[key].values()) for key, execution in batch.executions.items()
            )
        )
        metrics.record_node_outcomes(
            node for nodes in batch.changed_nodes.values() for node in nodes.values()
        )
        for dispatch in batch.dispatches:
            retry_until_done(lambda dispatch=dispatch: enqueue(dispatch))
        if batch.dispatches:
            announcements = [
                (TASK_DISPATCH, d.payload["execution_id"], encode({k: d.payload[k] for k in ANNOUNCED}))
                for d in batch.dispatches
            ]
            retry_until_done(lambda: kafka_io.publish(announcements))


ANNOUNCED = ("execution_id", "node_id", "attempt", "handler", "config")


def enqueue(dispatch: Dispatch) -> None:
    payload = dispatch.payload
    celery_app.send_task(
        RUN_NODE_TASK,
        args=[payload],
        task_id=task_id(payload["execution_id"], payload["node_id"], payload["attempt"]),
        countdown=dispatch.countdown_s or None,
    )
