"""Kafka topic names and the shapes of the messages on them (JSON, keyed by execution id)."""

import json
from dataclasses import asdict, dataclass
from typing import Any

WORKFLOW_START = "workflow.start"
TASK_DISPATCH = "task.dispatch"
TASK_COMPLETE = "task.complete"
ALL_TOPICS = (WORKFLOW_START, TASK_DISPATCH, TASK_COMPLETE)
RUN_NODES_TASK = "workers.run_nodes"
RUN_NODE_TASK = "workers.run_node"  # the one-node task of earlier versions, still accepted


def task_id(execution_id: str, node_id: str, attempt: int) -> str:
    """The Celery task id of one node attempt, so cancel can revoke exactly that attempt."""
    return f"{execution_id}:{node_id}:{attempt}"


def bundle_task_id(payloads: list[dict[str, Any]]) -> str:
    """The Celery task id of a task running these node attempts: the first one's id, followed by
    `+N` when N more share the task (cancel revokes only single-node tasks; the worker's claim
    stops a cancelled node in a shared one)."""
    first = payloads[0]
    identifier = task_id(first["execution_id"], first["node_id"], first["attempt"])
    return f"{identifier}+{len(payloads) - 1}" if len(payloads) > 1 else identifier


@dataclass(frozen=True)
class TaskComplete:
    """A worker's report that one attempt of one node finished, well or badly."""

    execution_id: str
    node_id: str
    attempt: int
    status: str
    output: Any = None
    error: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    worker: str = ""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "TaskComplete":
        """Build from a decoded message, ignoring fields a newer worker may add."""
        fields = cls.__dataclass_fields__
        return cls(**{key: value for key, value in data.items() if key in fields})


def encode(payload: dict[str, Any] | TaskComplete) -> bytes:
    """Serialize a message value."""
    data = asdict(payload) if isinstance(payload, TaskComplete) else payload
    return json.dumps(data, separators=(",", ":"), default=str).encode()


def decode(value: bytes | None) -> dict[str, Any]:
    """Deserialize a message value; anything that is not a JSON object is an error."""
    data = json.loads(value or b"null")
    if not isinstance(data, dict):
        raise ValueError("message value is not a JSON object")
    return data
