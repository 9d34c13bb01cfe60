"""Operations that change state: submit, trigger. Keyword-only, typed, one transaction each."""

import hashlib
import json
from typing import Any

from django.db import transaction
from django.utils import timezone

from workers.handlers import handler_names
from workflows import mirror, outbox
from workflows.dag import DagValidationError, WorkflowSpec, parse_workflow
from workflows.errors import WorkflowError
from workflows.events import WORKFLOW_START
from workflows.models import Execution, ExecutionEvent, ExecutionStatus, NodeRun, WorkflowDefinition
from workflows.selectors import execution_locked

NODE_INSERT_BATCH = 2000


def workflow_validate(*, data: object) -> WorkflowSpec:
    """Parse and validate a submitted workflow, or raise a WorkflowError naming what is wrong."""
    try:
        return parse_workflow(data, handlers=handler_names())
    except DagValidationError as exc:
        raise WorkflowError(
            "invalid_workflow", exc.detail, errors=[error.as_dict() for error in exc.errors]
        ) from exc


def definition_store(*, spec: WorkflowSpec) -> WorkflowDefinition:
    """Store a definition once per distinct content; executions of the same workflow share it."""
    normalized = spec.to_json()
    digest = hashlib.sha256(json.dumps(normalized, sort_keys=True).encode()).hexdigest()
    definition, _ = WorkflowDefinition.objects.get_or_create(
        digest=digest, defaults={"name": spec.name, "spec": normalized, "node_count": len(spec.nodes)}
    )
    return definition


@transaction.atomic
def workflow_submit(*, data: object, input: dict[str, Any] | None = None, trigger: bool = False) -> Execution:
    """Validate and store a workflow and a PENDING execution of it, with a row per node."""
    spec = workflow_validate(data=data)
    definition = definition_store(spec=spec)
    execution = Execution.objects.create(
        definition=definition,
        name=spec.name,
        input={**spec.input, **(input or {})},
        total_nodes=len(spec.nodes),
    )
    nodes = [
        NodeRun(
            execution=execution,
            node_id=node.id,
            handler=node.handler,
            pending_deps=len(node.dependencies),
            position=position,
        )
        for position, node in enumerate(spec.nodes)
    ]
    NodeRun.objects.bulk_create(nodes, batch_size=NODE_INSERT_BATCH)
    ExecutionEvent.objects.create(execution=execution, kind="submitted", detail={"nodes": len(nodes)})
    if trigger:
        return execution_trigger(execution_id=execution.pk)
    transaction.on_commit(lambda: mirror.publish_quietly(execution, nodes))
    return execution


@transaction.atomic
def execution_trigger(*, execution_id: object) -> Execution:
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
    execution.save(update_fields=["status", "triggered_at"])
    ExecutionEvent.objects.create(execution=execution, kind="triggered")
    outbox.enqueue(WORKFLOW_START, str(execution.pk), {"execution_id": str(execution.pk)})
    transaction.on_commit(lambda: mirror.publish_quietly(execution, []))
    return execution
