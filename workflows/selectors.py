"""Queries the API, the admin and the commands read through."""

import contextlib
import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django.db.models import QuerySet
from redis import RedisError

from workflows import mirror
from workflows.core.dag import WorkflowSpec, parse_workflow
from workflows.errors import NotFound, WorkflowError
from workflows.handlers.registry import handler_names
from workflows.models import (
    ACTOR_FIELDS,
    TERMINAL_EXECUTION_STATUSES,
    Execution,
    ExecutionEvent,
    NodeRun,
    NodeStatus,
    WorkflowDefinition,
)

SPEC_CACHE_SIZE = 256


@lru_cache(maxsize=SPEC_CACHE_SIZE)
def definition_spec(definition_id: object) -> WorkflowSpec:
    """A stored definition, parsed once per process: definitions never change."""
    stored = WorkflowDefinition.objects.only("spec").get(pk=definition_id).spec
    return parse_workflow(stored, handlers=handler_names())


def parse_execution_id(execution_id: object) -> uuid.UUID:
    """A UUID, or NotFound: an id that is not a UUID names no execution."""
    try:
        return execution_id if isinstance(execution_id, uuid.UUID) else uuid.UUID(str(execution_id))
    except ValueError:
        raise NotFound(execution_id) from None


def execution_get(execution_id: object, *related: str) -> Execution:
    try:
        return Execution.objects.select_related(*related).get(pk=parse_execution_id(execution_id))
    except Execution.DoesNotExist:
        raise NotFound(execution_id) from None


def execution_locked(execution_id: object) -> Execution:
    """The execution, locked for the current transaction, with who acted on it (for the mirror)."""
    executions = Execution.objects.select_related(*ACTOR_FIELDS).select_for_update(of=("self",))
    try:
        return executions.get(pk=parse_execution_id(execution_id))
    except Execution.DoesNotExist:
        raise NotFound(execution_id) from None


def execution_list(*, status: str | None = None, name: str | None = None) -> QuerySet[Execution]:
    """Executions, newest first, optionally filtered by status and by name (case-insensitive part)."""
    executions = Execution.objects.select_related(*ACTOR_FIELDS)
    if status:
        executions = executions.filter(status=status.upper())
    if name:
        executions = executions.filter(name__icontains=name)
    return executions.order_by("-created_at")


def status_from_database(execution_id: object) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Read the state from the database and rebuild the mirror with it."""
    execution = execution_get(execution_id, *ACTOR_FIELDS)
    nodes = list(NodeRun.objects.filter(execution=execution).order_by("position"))
    with contextlib.suppress(RedisError):  # Redis down: the database answers alone
        mirror.fill_missing(execution, nodes)
    summary = {**mirror.execution_summary(execution), "actors": mirror.execution_actors(execution)}
    return summary, {node.node_id: mirror.node_detail(node) for node in nodes}


def mirrored_status(execution_id: uuid.UUID) -> tuple[dict[str, Any], dict[str, dict[str, Any]]] | None:
    """The complete mirrored state, or None when the mirror is missing, partial or unreachable
    (no actors: the scheduler rebuilt it after Redis lost it; only the services write them)."""
    try:
        state = mirror.read(execution_id)
    except RedisError:
        return None
    if state is None or len(state[1]) < state[0]["total"] or len(state[0]["actors"]) < len(ACTOR_FIELDS):
        return None
    return state


@dataclass(frozen=True)
class ExecutionState:
    """An execution's state as stored (the mirror's summary and node details, see mirror.py);
    StatusResponseSerializer renders it."""

    execution_id: uuid.UUID
    summary: dict[str, Any]
    nodes: dict[str, dict[str, Any]]

    @property
    def percentage(self) -> float:
        total = self.summary["total"]
        return round(100.0 * self.summary["completed"] / total, 1) if total else 0.0

    @property
    def node_states(self) -> dict[str, str]:
        return {node_id: detail["status"] for node_id, detail in self.nodes.items()}


def execution_status(execution_id: object) -> ExecutionState:
    """Status, progress and per-node detail: from the Redis mirror, else from the database."""
    parsed = parse_execution_id(execution_id)
    summary, nodes = mirrored_status(parsed) or status_from_database(parsed)
    return ExecutionState(parsed, summary, nodes)


@dataclass(frozen=True)
class ExecutionResults:
    """A finished execution and its completed nodes' outputs by node id."""

    execution: Execution
    results: dict[str, Any]


def execution_results(execution_id: object) -> ExecutionResults:
    """Every completed node's output, once the execution has finished."""
    execution = execution_get(execution_id)
    if execution.status not in TERMINAL_EXECUTION_STATUSES:
        raise WorkflowError(
            "not_finished",
            f"execution '{execution.pk}' is {execution.status}; results are available once it has finished",
        )
    outputs = NodeRun.objects.filter(execution=execution, status=NodeStatus.COMPLETED).order_by("position")
    return ExecutionResults(execution, dict(outputs.values_list("node_id", "output")))


def execution_events(execution_id: object) -> QuerySet[ExecutionEvent]:
    """The execution's history, oldest first."""
    return ExecutionEvent.objects.filter(execution=execution_get(execution_id)).order_by("id")
