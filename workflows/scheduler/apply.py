"""Apply the core's decisions (workflows/core/transitions.py) to the rows of a batch.

Each function reads what a decision needs from the rows, asks the core, and writes the answer
into the batch: statuses, counters, history, and the nodes to queue. Nothing here leaves the
database; workflows/scheduler/effects.py sends what the batch queued once it has committed.
"""

import random
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from workflows.core import transitions
from workflows.core.dag import WorkflowSpec
from workflows.core.transitions import Finish, GiveUp, Retry
from workflows.messages import TaskComplete, TaskPayload
from workflows.models import ACTIVE_NODE_STATUSES, EventKind, Execution, ExecutionStatus, NodeRun, NodeStatus
from workflows.scheduler.batch import Batch, Queued
from workflows.scheduler.reconciler import Loss
from workflows.selectors import definition_spec


def start(execution_id: str, batch: Batch) -> None:
    """Queue every node that is ready: on the first start the roots, on a resume the nodes
    retry-from-failure reset. Idempotent: queued nodes are no longer PENDING."""
    execution = batch.execution(execution_id)
    if execution is None or execution.status != ExecutionStatus.RUNNING:
        return  # unknown, cancelled or finished
    if execution.started_at is None:
        execution.started_at = timezone.now()
        batch.record(execution, EventKind.STARTED)
    spec = definition_spec(execution.definition_id)
    ready = NodeRun.objects.filter(execution=execution, status=NodeStatus.PENDING, pending_deps=0)
    for node in batch.remember(execution, ready):
        if node.status == NodeStatus.PENDING and node.pending_deps == 0:
            queue(execution, node, spec, batch)


def complete(report: TaskComplete, batch: Batch, rng: random.Random) -> None:
    """Apply a worker's report of the attempt in flight; any other was applied or superseded."""
    execution = batch.executions.get(report.execution_id)
    if execution is None:
        return
    node = batch.node(execution, report.node_id)
    if node is None or not transitions.is_current(
        node.attempt, node.status in ACTIVE_NODE_STATUSES, report.attempt
    ):
        return
    node.started_at = parse_datetime(report.started_at or "") or node.started_at
    node.finished_at = parse_datetime(report.finished_at or "") or timezone.now()
    node.worker = report.worker
    spec = definition_spec(execution.definition_id)
    if report.status == NodeStatus.COMPLETED:
        node_completed(execution, node, report.output, spec, batch)
    else:
        node_failed(execution, node, report.error or "unknown error", spec, batch, rng)


def attempt_lost(loss: Loss, batch: Batch) -> None:
    """Give a lost attempt a new one, unless it was reported meanwhile; after
    MAX_LOST_ATTEMPTS the node fails."""
    execution_id, node_id, attempt = loss.attempt
    execution = batch.execution(execution_id)
    node = batch.node(execution, node_id) if execution is not None else None
    if (
        execution is None
        or node is None
        or not transitions.is_current(node.attempt, node.status in ACTIVE_NODE_STATUSES, attempt)
    ):
        return  # reported meanwhile
    running = execution.status == ExecutionStatus.RUNNING
    decision = transitions.attempt_lost(
        attempt, loss.reason, lost_attempts=node.lost_attempts, running=running
    )
    if isinstance(decision, GiveUp):
        give_up(execution, node, decision.error, batch)
        return
    node.lost_attempts += 1
    batch.record(execution, EventKind.NODE_LOST, node.node_id, attempt=attempt, reason=loss.reason)
    queue(execution, node, definition_spec(execution.definition_id), batch)


def apply_losses(losses: list[Loss], batch: Batch) -> None:
    """Read the rows of every lost attempt in two queries (after a Redis restart there may be
    thousands), then apply each loss."""
    batch.lock_executions({loss.attempt[0] for loss in losses})
    wanted: dict[str, set[str]] = {}
    for execution_id, node_id, _ in (loss.attempt for loss in losses):
        if execution_id in batch.executions:
            wanted.setdefault(execution_id, set()).add(node_id)
    batch.load(wanted)
    for loss in losses:
        attempt_lost(loss, batch)


def node_completed(
    execution: Execution, node: NodeRun, output: Any, spec: WorkflowSpec, batch: Batch
) -> None:
    """Count the node down in its children (read once per batch), then queue those it made ready."""
    node.status, node.output, node.error = NodeStatus.COMPLETED, output, ""
    batch.changed(node)
    batch.record(execution, EventKind.NODE_COMPLETED, node.node_id, attempt=node.attempt)
    execution.completed_nodes += 1
    children = batch.load_nodes(execution, spec.children.get(node.node_id, ()))
    for child in children:
        child.pending_deps -= 1
        batch.counted_down(child)
    waiting = {child.node_id: child for child in children if child.status == NodeStatus.PENDING}
    decision = transitions.node_completed(
        {node_id: child.pending_deps for node_id, child in waiting.items()},
        running=execution.status == ExecutionStatus.RUNNING,
        completed_nodes=execution.completed_nodes,
        total_nodes=execution.total_nodes,
    )
    for node_id in decision.ready:
        queue(execution, waiting[node_id], spec, batch)
    if decision.finish is not None:
        finish(execution, decision.finish, batch)


def node_failed(
    execution: Execution, node: NodeRun, error: str, spec: WorkflowSpec, batch: Batch, rng: random.Random
) -> None:
    """Queue a new attempt after the policy's delay, or give the node up."""
    node.error = error
    decision = transitions.node_failed(
        spec.node(node.node_id).retry,
        error,
        counted_attempts=node.attempt - node.budget_base - node.lost_attempts,
        running=execution.status == ExecutionStatus.RUNNING,
        rng=rng,
    )
    if isinstance(decision, Retry):
        batch.record(
            execution,
            EventKind.NODE_RETRY,
            node.node_id,
            attempt=node.attempt,
            error=error,
            delay_s=round(decision.delay_s, 3),
        )
        queue(execution, node, spec, batch, countdown_s=decision.delay_s)
    else:
        give_up(execution, node, decision.error, batch)


def give_up(execution: Execution, node: NodeRun, error: str, batch: Batch) -> None:
    """The node failed for good: so does the execution, if it was still running."""
    node.status, node.error = NodeStatus.FAILED, error
    batch.changed(node)
    batch.record(execution, EventKind.NODE_FAILED, node.node_id, attempt=node.attempt, error=error)
    execution.failed_nodes += 1
    ending = transitions.node_given_up(
        node.node_id, error, running=execution.status == ExecutionStatus.RUNNING
    )
    if ending is not None:
        finish(execution, ending, batch)


def fail(execution_id: str, error: str, batch: Batch) -> None:
    """Fail a running execution outright (its message poisoned the scheduler)."""
    execution = batch.execution(execution_id)
    if execution is not None and execution.status == ExecutionStatus.RUNNING:
        finish(execution, Finish(failed=True, error=error), batch)


def give_up_refused(refused: list[tuple[TaskPayload, str]], batch: Batch) -> None:
    """Fail the node attempts whose effects were refused for good (and so their executions); an
    attempt reported or superseded meanwhile is left alone."""
    batch.lock_executions(payload["execution_id"] for payload, _ in refused)
    for payload, error in refused:
        execution = batch.executions.get(payload["execution_id"])
        node = batch.node(execution, payload["node_id"]) if execution is not None else None
        if (
            execution is not None
            and node is not None
            and transitions.is_current(node.attempt, node.status in ACTIVE_NODE_STATUSES, payload["attempt"])
        ):
            give_up(execution, node, error, batch)


def queue(
    execution: Execution, node: NodeRun, spec: WorkflowSpec, batch: Batch, countdown_s: float = 0.0
) -> None:
    """Mark the node QUEUED for a new attempt; payloads.resolve_queued builds its task. Its time
    limit runs from when a worker starts it, not from now."""
    node.attempt += 1
    node.status = NodeStatus.QUEUED
    node.queued_at, node.started_at, node.finished_at = timezone.now(), None, None
    batch.changed(node)
    batch.record(execution, EventKind.NODE_QUEUED, node.node_id, attempt=node.attempt)
    batch.queued.append(Queued(execution, node, countdown_s))


def finish(execution: Execution, ending: Finish, batch: Batch) -> None:
    """End the execution; when it failed, nodes that can no longer run become SKIPPED."""
    status = ExecutionStatus.FAILED if ending.failed else ExecutionStatus.COMPLETED
    execution.status, execution.error, execution.finished_at = status, ending.error, timezone.now()
    batch.record(execution, EventKind.FAILED if ending.failed else EventKind.COMPLETED, error=ending.error)
    if not ending.failed:
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
