"""Retries, timeouts, cancel and retry-from-failure, through the API and the commands."""

from typing import Any

import requests

from devtools.devstack import Stack, wait_until


def node(node_id: str, handler: str, deps: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    config = extra.pop("config", {})
    return {"id": node_id, "handler": handler, "dependencies": deps or [], "config": config, **extra}


def kinds(stack: Stack, execution_id: str, node_id: str) -> list[str]:
    return [event["kind"] for event in stack.events(execution_id) if event["node_id"] == node_id]


def post(stack: Stack, path: str) -> requests.Response:
    return requests.post(stack.url(path), timeout=10)


def test_node_retries_with_backoff_until_it_succeeds(stack: Stack) -> None:
    flaky = node(
        "B", "llm", ["A"], config={"fail_attempts": 2}, retry={"max_attempts": 3, "backoff_seconds": 0.1}
    )
    execution_id = stack.submit(
        {"name": "Flaky", "dag": {"nodes": [node("A", "input"), flaky]}}, trigger=True
    )
    state = stack.wait_finished(execution_id)
    assert state["status"] == "COMPLETED", state
    assert state["nodes"]["B"]["attempt"] == 3
    assert kinds(stack, execution_id, "B").count("node_retry") == 2


def test_workflow_defaults_give_every_node_its_retries(stack: Stack) -> None:
    workflow = {
        "name": "Defaults",
        "defaults": {"retry": {"max_attempts": 2, "backoff_seconds": 0}},
        "dag": {"nodes": [node("A", "call_external_service", config={"fail_attempts": 1})]},
    }
    state = stack.wait_finished(stack.submit(workflow, trigger=True))
    assert state["status"] == "COMPLETED" and state["nodes"]["A"]["attempt"] == 2


def test_timed_out_attempt_counts_as_failed(stack: Stack) -> None:
    slow = node("A", "llm", config={"mock_latency_seconds": 5}, timeout_seconds=0.5)
    state = stack.wait_finished(stack.submit({"name": "Slow", "dag": {"nodes": [slow]}}, trigger=True))
    assert state["status"] == "FAILED"
    assert "timed out after 0.5s" in state["error"]


def test_cancel_stops_a_running_execution(stack: Stack) -> None:
    workflow = {
        "name": "Cancel me",
        "dag": {
            "nodes": [
                node("A", "llm", config={"mock_latency_seconds": 3}),
                node("B", "llm", ["A"]),
                node("C", "output", ["B"]),
            ]
        },
    }
    execution_id = stack.submit(workflow, trigger=True)
    wait_until(lambda: stack.status(execution_id)["node_states"]["A"] == "RUNNING", 30, "A to start")
    response = post(stack, f"/workflows/{execution_id}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    state = stack.status(execution_id)
    assert state["status"] == "CANCELLED"
    assert set(state["node_states"].values()) == {"CANCELLED"}
    assert post(stack, f"/workflows/{execution_id}/cancel").status_code == 409
    # A's late result is ignored and B never starts: the history ends with the cancellation.
    wait_until(lambda: "node_completed" not in kinds(stack, execution_id, "A"), 5, "nothing")
    assert kinds(stack, execution_id, "B") == []
    assert stack.status(execution_id)["status"] == "CANCELLED"


def test_retry_from_failure_keeps_completed_outputs(stack: Stack) -> None:
    workflow = {
        "name": "Retry me",
        "dag": {
            "nodes": [
                node("A", "input", config={"value": 7}),
                node("B", "llm", ["A"], config={"fail_attempts": 1, "prompt": "{{ A.value }}"}),
                node("C", "output", ["B"]),
            ]
        },
    }
    execution_id = stack.submit(workflow, trigger=True)
    failed = stack.wait_finished(execution_id)
    assert failed["status"] == "FAILED" and failed["node_states"] == {
        "A": "COMPLETED",
        "B": "FAILED",
        "C": "SKIPPED",
    }
    assert post(stack, f"/workflows/{execution_id}/retry").json()["status"] == "retrying"
    state = stack.wait_finished(execution_id)
    assert state["status"] == "COMPLETED", state
    assert state["error"] is None
    assert kinds(stack, execution_id, "A").count("node_completed") == 1
    assert state["nodes"]["A"]["attempt"] == 1 and state["nodes"]["B"]["attempt"] == 2
    assert post(stack, f"/workflows/{execution_id}/retry").status_code == 409


def test_cancel_and_retry_commands(stack: Stack) -> None:
    execution_id = stack.submit({"name": "By command", "dag": {"nodes": [node("A", "llm")]}})
    cancelled = stack.manage("cancel_execution", execution_id, check=False, timeout=60)
    assert cancelled.returncode == 0, cancelled.stderr
    assert f"{execution_id}: CANCELLED" in cancelled.stdout
    again = stack.manage("cancel_execution", execution_id, check=False, timeout=60)
    assert again.returncode == 2 and "already finished" in again.stderr
    retried = stack.manage("retry_execution", execution_id, check=False, timeout=60)
    assert retried.returncode == 0, retried.stderr
    assert stack.wait_finished(execution_id)["status"] == "COMPLETED"
    unknown = stack.manage("retry_execution", "not-an-id", check=False, timeout=60)
    assert unknown.returncode == 2 and "no execution with id 'not-an-id'" in unknown.stderr
