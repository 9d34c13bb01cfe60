"""The engine end to end: real API, scheduler and Celery worker processes on Kafka and Redis."""

from datetime import datetime
from typing import Any

import requests

from devtools.devstack import Stack


def node(node_id: str, handler: str, deps: list[str] | None = None, **config: Any) -> dict[str, Any]:
    return {"id": node_id, "handler": handler, "dependencies": deps or [], "config": config}


def interval(state: dict[str, Any], node_id: str) -> tuple[datetime, datetime]:
    detail = state["nodes"][node_id]
    return datetime.fromisoformat(detail["started_at"]), datetime.fromisoformat(detail["finished_at"])


def results(stack: Stack, execution_id: str) -> dict[str, Any]:
    response = requests.get(stack.url(f"/workflows/{execution_id}/results"), timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def test_linear_chain_passes_data_downstream(stack: Stack) -> None:
    workflow = {
        "name": "Linear",
        "dag": {
            "nodes": [
                node("A", "input", topic="cats", count=3),
                node("B", "llm", ["A"], prompt="Write about {{ A.topic }}", n="{{ A.count }}"),
                node("C", "output", ["B"]),
            ]
        },
    }
    execution_id = stack.submit(workflow, trigger=True)
    state = stack.wait_finished(execution_id)
    assert state["status"] == "COMPLETED", state
    assert state["progress"] == {"total": 3, "completed": 3, "failed": 0, "percentage": 100.0}
    assert state["node_states"] == {"A": "COMPLETED", "B": "COMPLETED", "C": "COMPLETED"}
    outputs = results(stack, execution_id)["results"]
    assert outputs["B"]["prompt"] == "Write about cats"
    assert outputs["C"] == {"B": outputs["B"]}
    assert (
        interval(state, "A")[1]
        <= interval(state, "B")[0]
        <= interval(state, "B")[1]
        <= interval(state, "C")[0]
    )


def test_parallel_fan_out_runs_concurrently_and_fans_in(stack: Stack) -> None:
    branches = [
        node(f"P{i}", "call_external_service", ["A"], url=f"http://svc/{i}", mock_latency_seconds=1.0)
        for i in (1, 2, 3)
    ]
    workflow = {
        "name": "Parallel",
        "dag": {"nodes": [node("A", "input"), *branches, node("D", "output", ["P1", "P2", "P3"])]},
    }
    execution_id = stack.submit(workflow, trigger=True)
    state = stack.wait_finished(execution_id)
    assert state["status"] == "COMPLETED", state
    spans = [interval(state, f"P{i}") for i in (1, 2, 3)]
    assert max(start for start, _ in spans) < min(end for _, end in spans), (
        f"branches ran one after another: {spans}"
    )
    assert set(results(stack, execution_id)["results"]["D"]) == {"P1", "P2", "P3"}


def test_a_fan_out_wider_than_the_worker_pool_runs_at_once_sharing_tasks(stack: Stack) -> None:
    """24 branches readied together go out as 8 tasks of 3 (WORKFLOW_MIN_TASKS_PER_BATCH=8; as
    one task of 24 if tasks were waiting) to a worker with 8 threads; each task runs its nodes
    concurrently, so no branch waits for another."""
    branches = [
        node(f"P{i}", "call_external_service", ["A"], url=f"http://svc/{i}", mock_latency_seconds=1.0)
        for i in range(24)
    ]
    workflow = {
        "name": "Wide",
        "dag": {"nodes": [node("A", "input"), *branches, node("D", "output", [b["id"] for b in branches])]},
    }
    execution_id = stack.submit(workflow, trigger=True)
    state = stack.wait_finished(execution_id)
    assert state["status"] == "COMPLETED", state
    assert {detail["attempt"] for detail in state["nodes"].values()} == {1}
    spans = [interval(state, branch["id"]) for branch in branches]
    assert max(start for start, _ in spans) < min(end for _, end in spans), (
        f"some branches waited for others: {sorted(spans)}"
    )
    slowest = max(end for _, end in spans) - min(start for start, _ in spans)
    assert slowest.total_seconds() < 1.8, f"nodes of one task ran one after another: {sorted(spans)}"
    outputs = results(stack, execution_id)["results"]
    assert set(outputs["D"]) == {branch["id"] for branch in branches}
    assert outputs["P7"]["url"] == "http://svc/7"


def test_diamond_dispatches_fan_in_node_once(stack: Stack) -> None:
    workflow = {
        "name": "Diamond",
        "dag": {
            "nodes": [
                node("A", "input", topic="cats"),
                node("B", "call_external_service", ["A"], url="http://api.example.com/b"),
                node("C", "llm", ["A"], prompt="Write about {{ A.topic }}"),
                node("D", "output", ["B", "C"]),
            ]
        },
    }
    execution_ids = [stack.submit(workflow, trigger=True) for _ in range(5)]
    for execution_id in execution_ids:
        state = stack.wait_finished(execution_id)
        assert state["status"] == "COMPLETED", state
        assert {detail["attempt"] for detail in state["nodes"].values()} == {1}
        assert set(results(stack, execution_id)["results"]["D"]) == {"B", "C"}


def test_failing_node_fails_execution_and_skips_descendants(stack: Stack) -> None:
    workflow = {
        "name": "Failing",
        "dag": {
            "nodes": [
                node("A", "input"),
                node("B", "external_api", ["A"], url="http://down.example.com", status_code=500),
                node("C", "output", ["B"]),
            ]
        },
    }
    execution_id = stack.submit(workflow, trigger=True)
    state = stack.wait_finished(execution_id)
    assert state["status"] == "FAILED"
    assert "B" in state["error"] and "HTTP 500" in state["error"]
    assert state["node_states"] == {"A": "COMPLETED", "B": "FAILED", "C": "SKIPPED"}
    body = results(stack, execution_id)
    assert body["status"] == "FAILED" and "A" in body["results"] and "B" not in body["results"]


def test_unresolvable_template_fails_the_node_naming_the_reference(stack: Stack) -> None:
    workflow = {
        "name": "Bad reference",
        "dag": {
            "nodes": [
                node("A", "input", topic="cats"),
                node("B", "llm", ["A"], prompt="{{ A.missing }}"),
            ]
        },
    }
    state = stack.wait_finished(stack.submit(workflow, trigger=True))
    assert state["status"] == "FAILED"
    assert "{{ A.missing }}" in state["error"]


def test_cycle_is_rejected_with_its_path(stack: Stack) -> None:
    workflow = {
        "name": "Cyclic",
        "dag": {"nodes": [node("A", "input", ["C"]), node("B", "llm", ["A"]), node("C", "output", ["B"])]},
    }
    response = requests.post(stack.url("/workflows"), json=workflow, timeout=10)
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "cycle" in detail
    assert any(path in detail for path in ("A -> B -> C -> A", "B -> C -> A -> B", "C -> A -> B -> C"))


def test_unknown_ids_are_404_everywhere(stack: Stack) -> None:
    for execution_id in ("3f1c0bde-0000-4000-8000-000000000000", "not-a-uuid"):
        for method, path in (
            ("get", f"/workflows/{execution_id}"),
            ("get", f"/workflows/{execution_id}/results"),
            ("post", f"/workflows/{execution_id}/trigger"),
            ("post", f"/workflow/trigger/{execution_id}"),
        ):
            response = requests.request(method, stack.url(path), timeout=10)
            assert response.status_code == 404, (path, response.text)
            assert execution_id in response.json()["detail"]


def test_results_before_finish_is_400_naming_status(stack: Stack) -> None:
    execution_id = stack.submit({"name": "Waiting", "dag": {"nodes": [node("A", "input")]}})
    response = requests.get(stack.url(f"/workflows/{execution_id}/results"), timeout=10)
    assert response.status_code == 400
    assert "PENDING" in response.json()["detail"]


def test_original_clients_trigger_route_and_second_trigger_refused(stack: Stack) -> None:
    execution_id = stack.submit({"name": "Legacy", "dag": {"nodes": [node("A", "input")]}})
    first = requests.post(stack.url(f"/workflow/trigger/{execution_id}"), timeout=10)
    assert first.status_code == 200
    assert first.json() == {
        "status": "triggered",
        "execution_id": execution_id,
        "message": first.json()["message"],
    }
    second = requests.post(stack.url(f"/workflows/{execution_id}/trigger"), timeout=10)
    assert second.status_code == 409
    assert "already triggered" in second.json()["detail"]
    assert stack.wait_finished(execution_id)["status"] == "COMPLETED"


def test_list_is_newest_first_and_filters(stack: Stack) -> None:
    first = stack.submit({"name": "List-me-alpha", "dag": {"nodes": [node("A", "input")]}})
    second = stack.submit({"name": "List-me-beta", "dag": {"nodes": [node("A", "input")]}})
    listed = requests.get(stack.url("/workflows"), params={"name": "List-me"}, timeout=10).json()
    assert [row["execution_id"] for row in listed["results"]] == [second, first]
    pending = requests.get(
        stack.url("/workflows"), params={"name": "alpha", "status": "pending"}, timeout=10
    ).json()
    assert [row["execution_id"] for row in pending["results"]] == [first]
