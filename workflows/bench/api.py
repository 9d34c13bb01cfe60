"""The benchmark's HTTP client for a stack's API: submit, trigger, wait, read timings."""

import json
import re
import time
from datetime import datetime
from typing import Any

import requests

from workflows.devstack import Stack
from workflows.models import ExecutionStatus

POLL_INTERVAL_S = 0.25
REQUEST_TIMEOUT_S = 60.0
JSON_HEADERS = {"Content-Type": "application/json"}
HTML_TITLE = re.compile(r"<title>\s*(.*?)\s*</title>", re.DOTALL)


class ShapeTimeout(Exception):
    """A shape ran past its deadline; the report shows it as timed out instead of hanging."""


def epoch(text: str | None) -> float | None:
    """An ISO-8601 time from the API as seconds since the epoch."""
    return datetime.fromisoformat(text).timestamp() if text else None


def write_headers(stack: Stack) -> dict[str, str]:
    """The API token, when the stack's API wants one for writes."""
    token = stack.env.get("WORKFLOWS_API_TOKEN", "").strip()
    return {"Authorization": f"Bearer {token}"} if token else {}


def post_workflow(stack: Stack, body: bytes, timeout_s: float = REQUEST_TIMEOUT_S) -> requests.Response:
    """POST /workflows with an already encoded body (so only the request itself is timed)."""
    headers = {**JSON_HEADERS, **write_headers(stack)}
    return requests.post(stack.url("/workflows"), data=body, headers=headers, timeout=timeout_s)


def error_summary(response: requests.Response) -> str:
    """One line for a refused request: the JSON detail, or the title of an HTML error page."""
    try:
        return str(response.json().get("detail", response.text[:200]))
    except ValueError:
        title = HTML_TITLE.search(response.text)
        return f"(HTML, not JSON) {' '.join(title.group(1).split())}" if title else response.text[:200]


def submit(stack: Stack, workflow: dict[str, Any]) -> str:
    """Submit without triggering; the execution id."""
    response = post_workflow(stack, json.dumps(workflow).encode())
    if response.status_code != 201:
        raise RuntimeError(f"submit refused: HTTP {response.status_code} {error_summary(response)}")
    return response.json()["execution_id"]


def trigger(stack: Stack, execution_id: str) -> None:
    response = requests.post(
        stack.url(f"/workflows/{execution_id}/trigger"),
        headers=write_headers(stack),
        timeout=REQUEST_TIMEOUT_S,
    )
    if response.status_code != 200:
        raise RuntimeError(f"trigger refused: HTTP {response.status_code} {error_summary(response)}")


def running_count(stack: Stack, name: str) -> int:
    """How many executions whose name contains `name` are still RUNNING (one cheap list query)."""
    response = requests.get(
        stack.url("/workflows"), params={"name": name, "status": "running"}, timeout=REQUEST_TIMEOUT_S
    )
    response.raise_for_status()
    return int(response.json()["count"])


def ensure_alive(stack: Stack) -> None:
    """Fail at once, instead of at the deadline, when a process of the stack has exited."""
    for process, popen in stack.processes.items():
        if popen.poll() is not None:
            raise RuntimeError(f"the stack's {process} exited with {popen.returncode}; see {stack.workdir}")


def wait_none_running(stack: Stack, name: str, deadline: float) -> None:
    """Wait until no execution named like `name` runs; ShapeTimeout past `deadline` (monotonic)."""
    while running_count(stack, name):
        ensure_alive(stack)
        if time.monotonic() > deadline:
            raise ShapeTimeout(f"executions named {name!r} still running at the deadline")
        time.sleep(POLL_INTERVAL_S)


def executions_named(stack: Stack, name: str) -> list[dict[str, Any]]:
    """Every execution whose name contains `name`, as the list endpoint shows it (all pages)."""
    rows: list[dict[str, Any]] = []
    url: str | None = stack.url("/workflows")
    params: dict[str, str] | None = {"name": name}
    while url:
        response = requests.get(url, params=params, timeout=REQUEST_TIMEOUT_S)
        response.raise_for_status()
        page = response.json()
        rows.extend(page["results"])
        url, params = page["next"], None
    return rows


def finished_executions(stack: Stack, name: str) -> list[dict[str, Any]]:
    """The finished executions named like `name`; RuntimeError naming the first that did not complete."""
    rows = executions_named(stack, name)
    failed = [row for row in rows if row["status"] != ExecutionStatus.COMPLETED]
    if failed:
        raise RuntimeError(
            f"{len(failed)} of {len(rows)} executions did not complete: "
            f"{failed[0]['status']} {failed[0].get('error')}"
        )
    return rows


def node_details(stack: Stack, execution_id: str) -> dict[str, dict[str, Any]]:
    """Per-node status and timings (queued_at, started_at, finished_at) from GET /workflows/{id}."""
    return stack.status(execution_id)["nodes"]
