"""The contract between the engine's processes, imported by senders and receivers alike: Kafka topic
names and the shapes of the messages on them (JSON, keyed by execution id), their header names, the
node payload of a Celery task, and the validation every receiver applies to what it reads."""

import json
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, NotRequired, TypedDict, cast

from workflows.core.dag import is_node_id

WORKFLOW_START = "workflow.start"
TASK_DISPATCH = "task.dispatch"
TASK_COMPLETE = "task.complete"
DEAD_LETTER = "workflow.dead_letter"
ALL_TOPICS = (WORKFLOW_START, TASK_DISPATCH, TASK_COMPLETE, DEAD_LETTER)
RUN_NODES_TASK = "workers.run_nodes"
RUN_NODE_TASK = "workers.run_node"  # the one-node task of earlier versions, still accepted
REPORT_STATUSES = ("COMPLETED", "FAILED")
# The header of every Kafka message and Celery task the engine sends: its HMAC (workflows/signatures.py).
SIGNATURE_HEADER = "workflow_signature"
# The headers of a dead letter are this prefix and what they say (workflows/dead_letters.py).
DEAD_LETTER_HEADER_PREFIX = "dead_letter."
_MISSING = object()


class InvalidMessage(ValueError):
    """A message or task payload that breaks its contract. `reason` is a short code that names
    the problem (`invalid_attempt`, `not_json`…; a metric label, so a small fixed set), the
    message says what is wrong and where."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class TaskPayload(TypedDict):
    """One node attempt in a Celery task's args, as the scheduler builds it and the worker reads
    it. A plain dict on the wire and in memory (typed, not converted: the worker and the scheduler
    handle thousands a second); `validate_task_payload` checks one received."""

    execution_id: str
    node_id: str
    position: int
    attempt: int
    handler: str
    config: dict[str, Any]
    upstream: dict[str, Any]
    timeout_seconds: float | None
    input: NotRequired[dict[str, Any]]  # the workflow input, in tasks queued by earlier versions


class TaskDispatch(TypedDict):
    """A `task.dispatch` message: the audit record of one node attempt sent to the workers."""

    execution_id: str
    node_id: str
    attempt: int
    handler: str
    config: dict[str, Any]


DISPATCH_FIELDS = tuple(TaskDispatch.__annotations__)


def dispatch_of(payload: TaskPayload) -> TaskDispatch:
    """The `task.dispatch` message announcing a node payload."""
    return cast(TaskDispatch, {name: payload[name] for name in DISPATCH_FIELDS})


def task_id(execution_id: str, node_id: str, attempt: int) -> str:
    """The Celery task id of one node attempt, so cancel can revoke exactly that attempt."""
    return f"{execution_id}:{node_id}:{attempt}"


def bundle_task_id(payloads: list[TaskPayload]) -> str:
    """The Celery task id of a task running these node attempts: the first one's id, followed by
    `+N` when N more share the task (cancel revokes only single-node tasks; the worker's claim
    stops a cancelled node in a shared one)."""
    first = payloads[0]
    identifier = task_id(first["execution_id"], first["node_id"], first["attempt"])
    return f"{identifier}+{len(payloads) - 1}" if len(payloads) > 1 else identifier


@dataclass(frozen=True)
class WorkflowStart:
    """The announcement that an execution was triggered (or resumed by retry-from-failure)."""

    execution_id: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "WorkflowStart":
        """Validate a decoded message; fields a newer sender may add are ignored."""
        return cls(execution_id_of(data))

    def to_json(self) -> dict[str, Any]:
        """The message as the outbox stores it (and the relay sends it)."""
        return asdict(self)


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
    def from_json(cls, data: Mapping[str, Any]) -> "TaskComplete":
        """Validate a decoded report field by field, raising InvalidMessage for the first wrong
        one; fields a newer worker may add are ignored."""
        status = data.get("status", _MISSING)
        if status not in REPORT_STATUSES:
            raise invalid("status", f"must be one of {', '.join(REPORT_STATUSES)}", status)
        return cls(
            execution_id=execution_id_of(data),
            node_id=node_id_of(data),
            attempt=attempt_of(data),
            status=str(status),
            output=data.get("output"),
            error=text_of(data, "error"),
            started_at=moment_of(data, "started_at"),
            finished_at=moment_of(data, "finished_at"),
            worker=text_of(data, "worker"),
        )


def validate_task_payload(payload: object) -> TaskPayload:
    """Check one node payload of a Celery task (what Scheduler.build_task builds) and return it
    typed; the worker checks the handler name against its registry itself."""
    if not isinstance(payload, dict):
        shown = type(payload).__name__
        raise InvalidMessage("not_object", f"a node payload must be a JSON object, not {shown}")
    execution_id_of(payload)
    node_id_of(payload)
    attempt_of(payload)
    if not isinstance(payload.get("handler"), str):
        raise invalid("handler", "must be a string", payload.get("handler", _MISSING))
    for name in ("config", "upstream", "input"):
        if not isinstance(payload.get(name, {}), dict):
            raise invalid(name, "must be a JSON object", payload[name])
    timeout_s = payload.get("timeout_seconds")
    if timeout_s is not None and (not is_number(timeout_s) or not 0 < timeout_s < float("inf")):
        raise invalid("timeout_seconds", "must be a positive number or null", timeout_s)
    return cast(TaskPayload, payload)


def invalid(name: str, rule: str, value: object) -> InvalidMessage:
    """The error for field `name`, showing (the start of) the value it had."""
    shown = "missing" if value is _MISSING else f"got {json.dumps(value, default=str)[:80]}"
    return InvalidMessage(f"invalid_{name}", f"field '{name}' {rule} ({shown})")


def execution_id_of(data: Mapping[str, Any]) -> str:
    """The execution id, in the canonical form the database and Kafka keys use."""
    value = data.get("execution_id", _MISSING)
    try:
        if isinstance(value, str):
            return str(uuid.UUID(value))
    except ValueError:
        pass
    raise invalid("execution_id", "must be a UUID string", value)


def node_id_of(data: Mapping[str, Any]) -> str:
    value = data.get("node_id", _MISSING)
    if isinstance(value, str) and is_node_id(value):
        return value
    raise invalid("node_id", "must be a node id (1-128 letters, digits, '_' or '-')", value)


def attempt_of(data: Mapping[str, Any]) -> int:
    value = data.get("attempt", _MISSING)
    if type(value) is int and value >= 1:
        return value
    raise invalid("attempt", "must be a whole number of at least 1", value)


def text_of(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name, "")
    if isinstance(value, str):
        return value
    raise invalid(name, "must be a string", value)


def moment_of(data: Mapping[str, Any], name: str) -> str | None:
    """An ISO-8601 time with its UTC offset, or null: a time without one could not be compared
    with the scheduler's (the metrics subtract them)."""
    value = data.get(name)
    if value is None:
        return None
    try:
        if isinstance(value, str) and datetime.fromisoformat(value).tzinfo is not None:
            return value
    except ValueError:
        pass
    raise invalid(name, "must be an ISO-8601 time with a UTC offset, or null", value)


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def encode(payload: Mapping[str, Any] | TaskComplete) -> bytes:
    """Serialize a message value. A report is strict JSON (TypeError for a set, ValueError for
    NaN or infinity): its output must reach the database as the handler returned it."""
    if isinstance(payload, TaskComplete):
        return json.dumps(asdict(payload), separators=(",", ":"), allow_nan=False).encode()
    return json.dumps(payload, separators=(",", ":"), default=str).encode()


def decode(value: bytes | None) -> dict[str, Any]:
    """Deserialize a message value; anything that is not a JSON object is an InvalidMessage."""
    try:
        data = json.loads(value or b"null")
    except ValueError as exc:  # UnicodeDecodeError included
        raise InvalidMessage("not_json", f"the message value is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidMessage("not_object", f"the message value is JSON {type(data).__name__}, not an object")
    return data
