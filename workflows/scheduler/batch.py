"""The scheduler's unit of work: one transaction's rows, read once, changed in memory, written
together, with the history to record and the tasks to send after commit."""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from workflows import bulk
from workflows.messages import TaskPayload
from workflows.models import EventKind, Execution, ExecutionEvent, NodeRun


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

    def record(self, execution: Execution, kind: EventKind, node_id: str = "", **detail: Any) -> None:
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


def group_by_execution(queued: Iterable[Queued]) -> dict[str, list[Queued]]:
    grouped: dict[str, list[Queued]] = {}
    for item in queued:
        grouped.setdefault(str(item.execution.pk), []).append(item)
    return grouped
