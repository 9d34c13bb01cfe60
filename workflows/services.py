"""Operations that change state: submit, trigger. Keyword-only, typed, one transaction each."""

import hashlib
import json
from typing import Any

from celery import current_app as celery_app
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.utils import timezone

from workflows import bulk, mirror, outbox
from workflows.conf import conf
from workflows.core.dag import DagValidationError, WorkflowSpec, parse_workflow
from workflows.core.limits import size_problem
from workflows.errors import WorkflowError
from workflows.handlers.registry import handler_names
from workflows.messages import WORKFLOW_START, WorkflowStart, task_id
from workflows.models import (
    ACTIVE_NODE_STATUSES,
    RESETTABLE_NODE_STATUSES,
    RETRYABLE_EXECUTION_STATUSES,
    TERMINAL_EXECUTION_STATUSES,
    EventKind,
    Execution,
    ExecutionEvent,
    ExecutionStatus,
    NodeRun,
    NodeStatus,
    WorkflowDefinition,
)
from workflows.selectors import definition_spec, execution_locked

NODE_INSERT_BATCH = 2000
CANCELLABLE_NODE_STATUSES = ACTIVE_NODE_STATUSES | {NodeStatus.PENDING}
Actor = AbstractBaseUser | None  # who acts: a user, or None for a command or an anonymous request


def by(actor: Actor) -> dict[str, str | None]:
    """The event detail naming who acted; the name stays in the history if the user is deleted."""
    return {"by": actor.get_username() if actor is not None else None}


def workflow_validate(*, data: object) -> WorkflowSpec:
    """Parse and validate a submitted workflow, or raise a WorkflowError naming what is wrong."""
    try:
        return parse_workflow(data, handlers=handler_names(), max_config_bytes=conf().max_config_bytes)
    except DagValidationError as exc:
        raise WorkflowError(
            "invalid_workflow", exc.detail, errors=[error.as_dict() for error in exc.errors]
        ) from exc


def checked_input(workflow_input: dict[str, Any]) -> dict[str, Any]:
    """The workflow input (the definition's, merged with a submitter's overrides), or a
    WorkflowError when it is over its limit: nodes read it at run time."""
    problem = size_problem("input", workflow_input, conf().max_input_bytes, "WORKFLOW_MAX_INPUT_BYTES")
    if problem is not None:
        raise WorkflowError(
            "invalid_workflow", problem, errors=[{"field": "input", "message": problem, "node": None}]
        )
    return workflow_input


def definition_store(*, spec: WorkflowSpec) -> WorkflowDefinition:
    """Store a definition once per distinct content; executions of the same workflow share it."""
    normalized = spec.to_json()
    digest = hashlib.sha256(json.dumps(normalized, sort_keys=True).encode()).hexdigest()
    definition, _ = WorkflowDefinition.objects.get_or_create(
        digest=digest, defaults={"name": spec.name, "spec": normalized, "node_count": len(spec.nodes)}
    )
    return definition


@transaction.atomic
def workflow_submit(
    *, data: object, input: dict[str, Any] | None = None, trigger: bool = False, actor: Actor = None
) -> Execution:
    """Validate and store a workflow and a PENDING execution of it, with a row per node."""
    spec = workflow_validate(data=data)
    workflow_input = checked_input({**spec.input, **(input or {})})
    definition = definition_store(spec=spec)
    execution = Execution.objects.create(
        definition=definition,
        name=spec.name,
        input=workflow_input,
        total_nodes=len(spec.nodes),
        submitted_by=actor,
    )
    insert_pending_nodes(execution, spec)
    ExecutionEvent.objects.create(
        execution=execution, kind=EventKind.SUBMITTED, detail={"nodes": len(spec.nodes), **by(actor)}
    )
    if trigger:
        return execution_trigger(execution_id=execution.pk, actor=actor)
    pending = [
        mirror.PendingNode(node.id, node.handler, position) for position, node in enumerate(spec.nodes)
    ]
    transaction.on_commit(lambda: mirror.publish_quietly(execution, pending))
    return execution


def insert_pending_nodes(execution: Execution, spec: WorkflowSpec) -> None:
    """Insert one PENDING row per node, as plain tuples (see workflows/bulk.py)."""
    meta = NodeRun._meta
    execution_column = meta.get_field("execution")
    execution_value = execution_column.get_db_prep_value(execution.pk, connection)
    defaults = {
        "status": NodeStatus.PENDING.value,
        "attempt": 0,
        "budget_base": 0,
        "lost_attempts": 0,
        "error": "",
        "worker": "",
    }
    columns = [execution_column.column, "node_id", "handler", "pending_deps", "position", *defaults]
    fixed = tuple(defaults.values())
    bulk.insert_nodes(
        columns,
        (
            (execution_value, node.id, node.handler, len(node.dependencies), position, *fixed)
            for position, node in enumerate(spec.nodes)
        ),
    )


@transaction.atomic
def execution_trigger(*, execution_id: object, actor: Actor = None) -> Execution:
    """Start a PENDING execution: mark it RUNNING and queue workflow.start in the outbox.

    A second trigger is refused with 409 so a workflow never runs twice.
    """
    execution = execution_locked(execution_id)
    if execution.status != ExecutionStatus.PENDING:
        raise WorkflowError(
            "already_triggered",
            f"execution '{execution.pk}' was already triggered; its status is {execution.status}",
            status=409,
        )
    execution.status = ExecutionStatus.RUNNING
    execution.triggered_at = timezone.now()
    execution.triggered_by = actor
    execution.save(update_fields=["status", "triggered_at", "triggered_by"])
    ExecutionEvent.objects.create(execution=execution, kind=EventKind.TRIGGERED, detail=by(actor))
    outbox.enqueue(WORKFLOW_START, str(execution.pk), WorkflowStart(str(execution.pk)).to_json())
    transaction.on_commit(lambda: mirror.publish_quietly(execution, []))
    return execution


@transaction.atomic
def execution_cancel(*, execution_id: object, actor: Actor = None) -> Execution:
    """Cancel a pending or running execution: no node starts any more, queued tasks are revoked,
    and late results of running ones are ignored."""
    execution = execution_locked(execution_id)
    if execution.status in TERMINAL_EXECUTION_STATUSES:
        raise WorkflowError(
            "already_finished",
            f"execution '{execution.pk}' has already finished; its status is {execution.status}",
            status=409,
        )
    now = timezone.now()
    execution.status, execution.error, execution.finished_at = ExecutionStatus.CANCELLED, "cancelled", now
    execution.cancelled_by = actor
    execution.save(update_fields=["status", "error", "finished_at", "cancelled_by"])
    open_nodes = list(execution.nodes.filter(status__in=CANCELLABLE_NODE_STATUSES))
    execution.nodes.filter(pk__in=[node.pk for node in open_nodes]).update(status=NodeStatus.CANCELLED)
    for node in open_nodes:
        node.status = NodeStatus.CANCELLED
    ExecutionEvent.objects.create(
        execution=execution, kind=EventKind.CANCELLED, detail={"nodes": len(open_nodes), **by(actor)}
    )
    revoked = [task_id(str(execution.pk), node.node_id, node.attempt) for node in open_nodes if node.attempt]
    transaction.on_commit(lambda: mirror.publish_quietly(execution, open_nodes))
    if revoked:
        transaction.on_commit(lambda: celery_app.control.revoke(revoked))
    return execution


@transaction.atomic
def execution_retry(*, execution_id: object, actor: Actor = None) -> Execution:
    """Run a FAILED or CANCELLED execution again from where it stopped.

    Completed nodes keep their outputs and do not run again; failed, skipped and cancelled
    nodes start over with a fresh retry budget.
    """
    execution = execution_locked(execution_id)
    if execution.status not in RETRYABLE_EXECUTION_STATUSES:
        raise WorkflowError(
            "not_retryable",
            f"execution '{execution.pk}' is {execution.status}; "
            "only FAILED or CANCELLED executions can be retried",
            status=409,
        )
    spec = definition_spec(execution.definition_id)
    statuses = dict(execution.nodes.values_list("node_id", "status"))
    reset = list(execution.nodes.filter(status__in=RESETTABLE_NODE_STATUSES))
    for node in reset:
        node.status, node.error, node.budget_base, node.lost_attempts = (
            NodeStatus.PENDING,
            "",
            node.attempt,
            0,
        )
        node.pending_deps = sum(
            statuses[dep] != NodeStatus.COMPLETED for dep in spec.node(node.node_id).dependencies
        )
    NodeRun.objects.bulk_update(
        reset,
        ["status", "error", "budget_base", "lost_attempts", "pending_deps"],
        batch_size=NODE_INSERT_BATCH,
    )
    execution.status, execution.error, execution.finished_at = ExecutionStatus.RUNNING, "", None
    execution.failed_nodes, execution.retried_by = 0, actor
    execution.save(update_fields=["status", "error", "finished_at", "failed_nodes", "retried_by"])
    ExecutionEvent.objects.create(
        execution=execution, kind=EventKind.RETRIED, detail={"nodes": len(reset), **by(actor)}
    )
    outbox.enqueue(WORKFLOW_START, str(execution.pk), WorkflowStart(str(execution.pk)).to_json())
    transaction.on_commit(lambda: mirror.publish_quietly(execution, reset))
    return execution
