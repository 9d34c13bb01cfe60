"""Example requests and responses: the OpenAPI examples and the browsable API's initial form content.

The error bodies are what the API really answers (tests/workflows/test_api_docs.py checks the ones
that need no running services), so a reader can rely on their shape and wording.
"""

from drf_spectacular.utils import OpenApiExample

EXECUTION_ID = "3f1c0bde-7a52-4c1e-9d1a-2b8f0e6a4c10"
UNKNOWN_ID = "0b9e2f4c-0000-4000-8000-000000000000"

WORKFLOW_NAME = "Cat facts"
WORKFLOW_INPUT = {"topic": "cats"}
WORKFLOW_DAG = {
    "nodes": [
        {"id": "params", "handler": "input", "dependencies": []},
        {
            "id": "fetch",
            "handler": "call_external_service",
            "dependencies": ["params"],
            "config": {"url": "https://api.example.com/facts/{{ params.topic }}"},
            "retry": {"max_attempts": 3, "backoff_seconds": 1},
            "timeout_seconds": 30,
        },
        {
            "id": "write",
            "handler": "llm",
            "dependencies": ["params"],
            "config": {"prompt": "Write a short poem about {{ params.topic }}"},
        },
        {"id": "publish", "handler": "output", "dependencies": ["fetch", "write"]},
    ]
}
WORKFLOW_DEFAULTS = {"timeout_seconds": 60}
WORKFLOW = {
    "name": WORKFLOW_NAME,
    "input": WORKFLOW_INPUT,
    "defaults": WORKFLOW_DEFAULTS,
    "dag": WORKFLOW_DAG,
}

INVALID_WORKFLOW = {
    "name": "Broken",
    "dag": {
        "nodes": [
            {"id": "fetch", "handler": "input"},
            {"id": "summary", "handler": "summarise", "dependencies": ["fetch", "translate"]},
        ]
    },
}
INVALID_WORKFLOW_ERROR = {
    "detail": "node 'summary': unknown handler 'summarise'; known handlers: call_external_service, "
    "input, llm, output (at dag.nodes[1].handler); and 1 more problem",
    "code": "invalid_workflow",
    "errors": [
        {
            "field": "dag.nodes[1].handler",
            "message": "node 'summary': unknown handler 'summarise'; "
            "known handlers: call_external_service, input, llm, output",
            "node": "summary",
        },
        {
            "field": "dag.nodes[1].dependencies[1]",
            "message": "node 'summary': depends on unknown node 'translate'",
            "node": "summary",
        },
    ],
}
CYCLE = {
    "name": "Cyclic",
    "dag": {
        "nodes": [
            {"id": "A", "handler": "input", "dependencies": ["B"]},
            {"id": "B", "handler": "llm", "dependencies": ["A"]},
        ]
    },
}
CYCLE_ERROR = {
    "detail": "cycle detected: A -> B -> A (at dag.nodes[0].dependencies[0])",
    "code": "invalid_workflow",
    "errors": [
        {"field": "dag.nodes[0].dependencies[0]", "message": "cycle detected: A -> B -> A", "node": "A"}
    ],
}
NOT_JSON_ERROR = {
    "detail": "request body is not valid JSON: Expecting value: line 1 column 1 (char 0)",
    "code": "parse_error",
    "errors": [],
}
NOT_FOUND_ERROR = {"detail": f"no execution with id '{UNKNOWN_ID}'", "code": "not_found", "errors": []}
ALREADY_TRIGGERED_ERROR = {
    "detail": f"execution '{EXECUTION_ID}' was already triggered; its status is RUNNING",
    "code": "already_triggered",
    "errors": [],
}
ALREADY_FINISHED_ERROR = {
    "detail": f"execution '{EXECUTION_ID}' has already finished; its status is COMPLETED",
    "code": "already_finished",
    "errors": [],
}
NOT_RETRYABLE_ERROR = {
    "detail": f"execution '{EXECUTION_ID}' is RUNNING; only FAILED or CANCELLED executions can be retried",
    "code": "not_retryable",
    "errors": [],
}
NOT_FINISHED_ERROR = {
    "detail": f"execution '{EXECUTION_ID}' is RUNNING; results are available once it has finished",
    "code": "not_finished",
    "errors": [],
}
NO_TOKEN_ERROR = {
    "detail": "POST /workflows needs credentials: send 'Authorization: Token <token>' "
    "(a user's API token or the service token), or sign in",
    "code": "not_authenticated",
    "errors": [],
}
WRONG_TOKEN_ERROR = {
    "detail": "the API token in the Authorization header is not valid",
    "code": "authentication_failed",
    "errors": [],
}
NO_PERMISSION_ERROR = {
    "detail": "POST /workflows needs the permission 'workflows.add_execution', which 'alice' does not have",
    "code": "permission_denied",
    "errors": [],
}
FORM_REFUSED_ERROR = {
    "detail": "an anonymous write may not send media type 'application/x-www-form-urlencoded', which a page "
    "on another site can send too: send application/json, or sign in and send the CSRF token",
    "code": "unsupported_media_type",
    "errors": [],
}
THROTTLED_ERROR = {
    "detail": "Request was throttled. Expected available in 42 seconds.",
    "code": "throttled",
    "errors": [],
}
NO_READ_CREDENTIALS_ERROR = {
    "detail": "GET /workflows needs credentials: send 'Authorization: Token <token>' "
    "(a user's API token or the service token), or sign in",
    "code": "not_authenticated",
    "errors": [],
}
NO_VIEW_PERMISSION_ERROR = {
    "detail": "GET /workflows needs the permission 'workflows.view_execution' "
    "(or 'workflows.change_execution'), which 'alice' does not have",
    "code": "permission_denied",
    "errors": [],
}
INVALID_PAGE_ERROR = {"detail": "Invalid page.", "code": "not_found", "errors": []}

SUBMITTED = {
    "execution_id": EXECUTION_ID,
    "status": "pending",
    "message": f"Workflow submitted; trigger it with POST /workflows/{EXECUTION_ID}/trigger",
}
SUBMITTED_AND_TRIGGERED = {
    "execution_id": EXECUTION_ID,
    "status": "running",
    "message": "Workflow submitted and triggered",
}
TRIGGERED = {"status": "triggered", "execution_id": EXECUTION_ID, "message": "Workflow execution started"}
CANCELLED = {"status": "cancelled", "execution_id": EXECUTION_ID, "message": "Workflow execution cancelled"}
RETRYING = {"status": "retrying", "execution_id": EXECUTION_ID, "message": "Failed nodes will run again"}


def node_state(
    status: str, handler: str, position: int, *, times: tuple[str, ...] = (), worker: str | None = None
) -> dict[str, object]:
    """One entry of the status response's `nodes`; `times` are queued, started, finished, as far as known."""
    queued, started, finished = (*times, None, None, None)[:3]
    return {
        "status": status,
        "handler": handler,
        "position": position,
        "attempt": 1 if queued else 0,
        "queued_at": queued,
        "started_at": started,
        "finished_at": finished,
        "worker": worker,
        "error": None,
    }


WORKER = "celery@worker-1"
STATUS = {
    "execution_id": EXECUTION_ID,
    "name": WORKFLOW_NAME,
    "status": "RUNNING",
    "progress": {"total": 4, "completed": 2, "failed": 0, "percentage": 50.0},
    "node_states": {"params": "COMPLETED", "fetch": "RUNNING", "write": "COMPLETED", "publish": "PENDING"},
    "nodes": {
        "params": node_state(
            "COMPLETED",
            "input",
            0,
            times=(
                "2025-01-06T10:00:00.012000+00:00",
                "2025-01-06T10:00:00.015000+00:00",
                "2025-01-06T10:00:00.016000+00:00",
            ),
            worker=WORKER,
        ),
        "fetch": node_state(
            "RUNNING",
            "call_external_service",
            1,
            times=("2025-01-06T10:00:00.031000+00:00", "2025-01-06T10:00:00.034000+00:00"),
            worker=WORKER,
        ),
        "write": node_state(
            "COMPLETED",
            "llm",
            2,
            times=(
                "2025-01-06T10:00:00.031000+00:00",
                "2025-01-06T10:00:00.035000+00:00",
                "2025-01-06T10:00:01.210000+00:00",
            ),
            worker=WORKER,
        ),
        "publish": node_state("PENDING", "output", 3),
    },
    "error": None,
    "created_at": "2025-01-06T09:59:59.870000+00:00",
    "started_at": "2025-01-06T10:00:00.004000+00:00",
    "finished_at": None,
    "submitted_by": "alice",
    "triggered_by": "alice",
    "cancelled_by": None,
    "retried_by": None,
}
FETCH_OUTPUT = {
    "status": 200,
    "url": "https://api.example.com/facts/cats",
    "method": "GET",
    "data": {"source": "https://api.example.com/facts/cats", "node": "fetch", "payload": None},
}
WRITE_OUTPUT = {
    "response": "Mock response to: Write a short poem about cats",
    "model": "mock-llm-1",
    "tokens_used": 19,
    "prompt": "Write a short poem about cats",
}
RESULTS = {
    "execution_id": EXECUTION_ID,
    "name": WORKFLOW_NAME,
    "status": "COMPLETED",
    "results": {
        "params": {"topic": "cats"},
        "fetch": FETCH_OUTPUT,
        "write": WRITE_OUTPUT,
        "publish": {"fetch": FETCH_OUTPUT, "write": WRITE_OUTPUT},
    },
    "error": None,
}
FAILED_RESULTS = {
    "execution_id": EXECUTION_ID,
    "name": WORKFLOW_NAME,
    "status": "FAILED",
    "results": {"params": {"topic": "cats"}, "write": WRITE_OUTPUT},
    "error": "node 'fetch' failed: HandlerError: HTTP 500 from https://api.example.com/facts/cats",
}
# One event: the schema shows it as the `results` of a page.
EVENT = {
    "at": "2025-01-06T10:00:00.020000Z",
    "kind": "node_completed",
    "node_id": "params",
    "detail": {"attempt": 1},
}
EVENTS_NEXT = f"http://127.0.0.1:8000/workflows/{EXECUTION_ID}/events?cursor=cD0xMjM%3D"
EVENTS_PREVIOUS = None
LIST_COUNT = 120
LIST_NEXT = "http://127.0.0.1:8000/workflows?page=3&status=COMPLETED"
LIST_PREVIOUS = "http://127.0.0.1:8000/workflows?page=1&status=COMPLETED"
LIST_ROW = {
    "execution_id": EXECUTION_ID,
    "name": WORKFLOW_NAME,
    "status": "COMPLETED",
    "progress": {"total": 4, "completed": 4, "failed": 0},
    "error": "",
    "created_at": "2025-01-06T09:59:59.870000Z",
    "started_at": "2025-01-06T10:00:00.004000Z",
    "finished_at": "2025-01-06T10:00:01.402000Z",
    "submitted_by": "alice",
    "triggered_by": "alice",
    "cancelled_by": None,
    "retried_by": None,
}
HEALTH_OK = {
    "status": "ok",
    "service": "workflow-engine",
    "version": "0.1.0",
    "down": [],
    "dependencies": {
        "database": {"status": "up", "latency_ms": 0.41},
        "redis": {"status": "up", "latency_ms": 0.22},
        "kafka": {"status": "up", "latency_ms": 1.87},
        "scheduler": {"status": "up", "latency_ms": 0.31},
    },
}
HEALTH_DEGRADED = {
    **HEALTH_OK,
    "status": "degraded",
    "down": ["kafka"],
    "dependencies": {
        **HEALTH_OK["dependencies"],
        "kafka": {
            "status": "down",
            "latency_ms": 2001.5,
            "error": 'KafkaError{code=_TRANSPORT,val=-195,str="Failed to get metadata: '
            'Local: Broker transport failure"}',
        },
    },
}

# OpenAPI examples. An example without status_codes belongs to the response it is listed under.
SUBMIT_REQUESTS = [
    OpenApiExample(
        "Workflow", WORKFLOW, summary="A diamond: fetch and write run in parallel", request_only=True
    ),
    OpenApiExample(
        "Submit and trigger",
        {**WORKFLOW, "trigger": True},
        summary="Start it in the same call (or add ?trigger=true)",
        request_only=True,
    ),
    OpenApiExample("Invalid workflow", INVALID_WORKFLOW, summary="Answered with 400", request_only=True),
]
SUBMITTED_EXAMPLES = [
    OpenApiExample("Submitted", SUBMITTED, summary="Stored, waiting for a trigger"),
    OpenApiExample("Submitted and triggered", SUBMITTED_AND_TRIGGERED, summary="With trigger=true"),
]
INVALID_WORKFLOW_EXAMPLES = [
    OpenApiExample("Invalid workflow", INVALID_WORKFLOW_ERROR, summary="Every problem, by node and field"),
    OpenApiExample("Cycle", CYCLE_ERROR, summary="The cycle's path is named"),
    OpenApiExample("Not JSON", NOT_JSON_ERROR, summary="The body could not be parsed"),
]
NOT_FOUND_EXAMPLES = [OpenApiExample("Unknown execution", NOT_FOUND_ERROR)]
ALREADY_TRIGGERED_EXAMPLES = [OpenApiExample("Already triggered", ALREADY_TRIGGERED_ERROR)]
ALREADY_FINISHED_EXAMPLES = [OpenApiExample("Already finished", ALREADY_FINISHED_ERROR)]
NOT_RETRYABLE_EXAMPLES = [OpenApiExample("Not retryable", NOT_RETRYABLE_ERROR)]
NOT_FINISHED_EXAMPLES = [OpenApiExample("Not finished", NOT_FINISHED_ERROR)]
NO_TOKEN_EXAMPLES = [
    OpenApiExample("No token", NO_TOKEN_ERROR),
    OpenApiExample("Wrong token", WRONG_TOKEN_ERROR),
]
NO_PERMISSION_EXAMPLES = [OpenApiExample("No permission", NO_PERMISSION_ERROR)]
FORM_REFUSED_EXAMPLES = [OpenApiExample("Anonymous form", FORM_REFUSED_ERROR)]
THROTTLED_EXAMPLES = [OpenApiExample("Throttled", THROTTLED_ERROR)]
NO_READ_CREDENTIALS_EXAMPLES = [OpenApiExample("No credentials", NO_READ_CREDENTIALS_ERROR)]
NO_VIEW_PERMISSION_EXAMPLES = [OpenApiExample("No permission", NO_VIEW_PERMISSION_ERROR)]
INVALID_PAGE_EXAMPLES = [OpenApiExample("Past the last page", INVALID_PAGE_ERROR)]
LIST_EXAMPLES = [OpenApiExample("Executions", LIST_ROW, summary="One page, newest first")]
STATUS_EXAMPLES = [OpenApiExample("Running", STATUS, summary="Half-way through")]
RESULTS_EXAMPLES = [
    OpenApiExample("Completed", RESULTS, summary="Every node's output"),
    OpenApiExample("Failed", FAILED_RESULTS, summary="Outputs of the nodes that completed"),
]
EVENTS_EXAMPLES = [OpenApiExample("History", EVENT, summary="A page of the history")]
TRIGGERED_EXAMPLES = [OpenApiExample("Triggered", TRIGGERED)]
CANCELLED_EXAMPLES = [OpenApiExample("Cancelled", CANCELLED)]
RETRYING_EXAMPLES = [OpenApiExample("Retrying", RETRYING)]
HEALTH_OK_EXAMPLES = [OpenApiExample("Healthy", HEALTH_OK)]
HEALTH_SCHEDULER_DOWN = {
    **HEALTH_OK,
    "status": "degraded",
    "down": ["scheduler"],
    "dependencies": {
        **HEALTH_OK["dependencies"],
        "scheduler": {
            "status": "down",
            "latency_ms": 0.35,
            "error": "no scheduler is alive: none sent a heartbeat in the last 10 s",
        },
    },
}
HEALTH_DEGRADED_EXAMPLES = [
    OpenApiExample("Kafka down", HEALTH_DEGRADED),
    OpenApiExample("No scheduler", HEALTH_SCHEDULER_DOWN),
]
