"""The operator commands as a user runs them, against the private running stack."""

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests

from devtools.devstack import ROOT, Stack
from workflows.management import console

EXAMPLES = sorted(path.relative_to(ROOT) for path in (ROOT / "examples").glob("*.json"))
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
WAIT_S = "60"  # the --timeout of runs that must finish: generous, as it only bounds a failing run


def submit(stack: Stack, *args: str) -> subprocess.CompletedProcess:
    return stack.manage("submit_workflow", *args, check=False, timeout=120)


def write_workflow(tmp_path: Path, workflow: dict[str, Any], name: str = "workflow.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(workflow, indent=2))
    return str(path)


def results(stack: Stack, execution_id: str) -> dict[str, Any]:
    response = requests.get(stack.url(f"/workflows/{execution_id}/results"), timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["results"]


def listed(stack: Stack, name: str) -> list[dict[str, Any]]:
    response = requests.get(stack.url("/workflows"), params={"name": name}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["results"]


def test_submit_and_wait_on_the_diamond_succeeds_showing_progress(stack: Stack) -> None:
    run = submit(stack, "examples/diamond.json", "--trigger", "--wait", "--timeout", WAIT_S)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    execution_id = re.fullmatch(rf"examples/diamond\.json: ({UUID})", lines[0])[1]
    assert lines[-1].startswith("examples/diamond.json: COMPLETED 4/4 nodes, in ")
    assert all(line.startswith("examples/diamond.json: ") for line in lines)
    assert "\x1b" not in run.stdout  # not a terminal: plain lines, no redrawing
    assert stack.status(execution_id)["status"] == "COMPLETED"


def test_submit_without_wait_prints_ids_and_leaves_executions_to_run(stack: Stack) -> None:
    run = submit(stack, "examples/linear.json")
    assert run.returncode == 0, run.stderr
    execution_id = re.fullmatch(rf"examples/linear\.json: ({UUID})\n", run.stdout)[1]
    assert stack.status(execution_id)["status"] == "PENDING"
    triggered = submit(stack, "examples/linear.json", "--trigger", "--json")
    assert triggered.returncode == 0, triggered.stderr
    [row] = json.loads(triggered.stdout)
    assert row == {
        "file": "examples/linear.json",
        "execution_id": row["execution_id"],
        "name": "Linear Processing",
        "status": "RUNNING",
    }


def test_json_output_lists_every_file_with_its_outcome(stack: Stack) -> None:
    run = submit(
        stack, "examples/parallel.json", "examples/linear.json", "--wait", "--json", "--timeout", WAIT_S
    )
    assert run.returncode == 0, run.stderr
    document = json.loads(run.stdout)
    assert [row["file"] for row in document] == ["examples/parallel.json", "examples/linear.json"]
    for row in document:
        assert row["status"] == "COMPLETED" and row["error"] is None
        assert row["progress"]["completed"] == row["progress"]["total"]
    assert document[0]["name"] == "Parallel API Fetcher"
    assert "COMPLETED" in run.stderr  # progress goes to stderr, keeping stdout one JSON document


def test_a_failing_execution_exits_1_with_its_error(stack: Stack, tmp_path: Path) -> None:
    workflow = {
        "name": "Failing from the command line",
        "dag": {
            "nodes": [
                {"id": "A", "handler": "input"},
                {
                    "id": "B",
                    "handler": "call_external_service",
                    "dependencies": ["A"],
                    "config": {"url": "http://down.example.com", "status_code": 500},
                },
                {"id": "C", "handler": "output", "dependencies": ["B"]},
            ]
        },
    }
    path = write_workflow(tmp_path, workflow)
    run = submit(stack, path, "--wait", "--timeout", WAIT_S)
    assert run.returncode == console.EXIT_FAILED, run.stdout + run.stderr
    assert f"{path}: FAILED 1/3 nodes, 1 failed" in run.stdout
    assert re.search(rf"{re.escape(path)}: execution {UUID} FAILED: .*B.*HTTP 500", run.stderr), run.stderr


def test_waiting_past_the_timeout_exits_3(stack: Stack, tmp_path: Path) -> None:
    workflow = {
        "name": "Slow",
        "dag": {"nodes": [{"id": "slow", "handler": "llm", "config": {"mock_latency_seconds": 3}}]},
    }
    path = write_workflow(tmp_path, workflow)
    run = submit(stack, path, "--wait", "--timeout", "0.5")
    assert run.returncode == console.EXIT_TIMED_OUT, run.stdout + run.stderr
    assert "timed out" in run.stderr and "unfinished after 0.500s" in run.stderr


def test_invalid_json_exits_2_naming_line_and_column(stack: Stack, tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{\n  "name": "Broken",\n  "dag": {"nodes": [}\n}\n')
    run = submit(stack, str(path), "--wait")
    assert run.returncode == console.EXIT_INVALID
    assert f"{path}: invalid JSON at line 3, column 21: Expecting value" in run.stderr
    assert run.stdout == ""


def test_an_invalid_dag_exits_2_naming_node_and_field_and_submits_nothing(
    stack: Stack, tmp_path: Path
) -> None:
    workflow = {
        "name": "Never-submitted-bad-handler",
        "dag": {
            "nodes": [
                {"id": "fetch", "handler": "input"},
                {"id": "summarize", "handler": "translate", "dependencies": ["fetch"]},
            ]
        },
    }
    good = write_workflow(tmp_path, {**workflow, "dag": {"nodes": workflow["dag"]["nodes"][:1]}}, "good.json")
    bad = write_workflow(tmp_path, workflow, "bad.json")
    run = submit(stack, good, bad, "--trigger")
    assert run.returncode == console.EXIT_INVALID
    assert f"{bad}: invalid workflow: node 'summarize': unknown handler 'translate'" in run.stderr
    assert "(at dag.nodes[1].handler)" in run.stderr
    assert "nothing submitted" in run.stderr
    assert listed(stack, "Never-submitted-bad-handler") == []


def test_unreadable_files_exit_2_with_the_os_reason(stack: Stack, tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    run = submit(stack, str(missing), str(tmp_path))
    assert run.returncode == console.EXIT_INVALID
    assert f"{missing}: cannot read: No such file or directory" in run.stderr
    assert f"{tmp_path}: cannot read: Is a directory" in run.stderr


def test_input_option_overrides_the_workflow_input(stack: Stack, tmp_path: Path) -> None:
    override = tmp_path / "input.json"
    override.write_text('{"audience": "engineers"}')
    for option, topic, audience in (
        ('{"topic": "dogs"}', "dogs", "children"),
        (f"@{override}", "cats", "engineers"),
    ):
        run = submit(stack, "examples/input_parameters.json", "--input", option, "--wait", "--json")
        assert run.returncode == 0, run.stderr
        outputs = results(stack, json.loads(run.stdout)[0]["execution_id"])
        assert outputs["params"] == {"topic": topic, "audience": audience, "max_words": 120}
        assert outputs["write"]["prompt"] == f"Write about {topic} for {audience} in at most 120 words"
        assert outputs["publish"]["url"] == f"https://cms.example.com/{topic}"


def test_data_passing_example_delivers_typed_and_interpolated_values(stack: Stack) -> None:
    run = submit(stack, "examples/data_passing.json", "--wait", "--json", "--timeout", WAIT_S)
    assert run.returncode == 0, run.stderr
    outputs = results(stack, json.loads(run.stdout)[0]["execution_id"])
    fetched = outputs["fetch"]
    assert fetched["url"] == "https://api.example.com/users/Ada/articles"
    assert fetched["data"]["payload"] == {
        "limit": 3,
        "tags": ["mathematics", "engines", "poetry"],
        "first_tag": "mathematics",
    }
    assert outputs["summarize"]["prompt"] == (
        "Summarize 3 articles from https://api.example.com/users/Ada/articles "
        'about ["mathematics","engines","poetry"] for Ada'
    )
    body = outputs["publish"]["data"]["payload"]
    assert body["title"] == "About engines"
    assert body["tokens"] == outputs["summarize"]["tokens_used"]
    assert body["request"] == fetched["data"]["payload"]


def test_validate_workflow_accepts_every_example_but_the_cyclic_one(stack: Stack) -> None:
    run = stack.manage("validate_workflow", *map(str, EXAMPLES), check=False)
    assert run.returncode == console.EXIT_INVALID
    valid = [path for path in EXAMPLES if path.name != "cyclic.json"]
    assert sorted(run.stdout.splitlines()) == sorted(
        f"{path}: OK ({len(json.loads((ROOT / path).read_text())['dag']['nodes'])} nodes)" for path in valid
    )
    assert "examples/cyclic.json: invalid workflow: cycle detected: A -> B -> C -> A" in run.stderr
    clean = stack.manage("validate_workflow", *map(str, valid), check=False)
    assert clean.returncode == 0, clean.stderr


def test_workflow_status_shows_every_node_of_a_finished_execution(stack: Stack) -> None:
    run = submit(stack, "examples/diamond.json", "--wait", "--json", "--timeout", WAIT_S)
    assert run.returncode == 0, run.stderr
    execution_id = json.loads(run.stdout)[0]["execution_id"]
    shown = stack.manage("workflow_status", execution_id, check=False)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == f"Execution {execution_id}  Diamond Pattern"
    assert lines[1].startswith("Status:   COMPLETED  (4/4 nodes completed, 0 failed)")
    rows = {cells[0]: cells for cells in map(str.split, lines) if cells and cells[0] in {"A", "B", "C", "D"}}
    assert set(rows) == {"A", "B", "C", "D"}
    assert rows["B"][1:4] == ["call_external_service", "COMPLETED", "1"]
    as_json = stack.manage("workflow_status", execution_id, "--json", check=False)
    assert as_json.returncode == 0, as_json.stderr
    state = json.loads(as_json.stdout)
    assert state["status"] == "COMPLETED" and set(state["nodes"]) == {"A", "B", "C", "D"}


@pytest.mark.parametrize("execution_id", ["3f1c0bde-0000-4000-8000-000000000000", "not-a-uuid"])
def test_workflow_status_of_an_unknown_id_is_not_found(stack: Stack, execution_id: str) -> None:
    run = stack.manage("workflow_status", execution_id, check=False)
    assert run.returncode == console.EXIT_INVALID
    assert f"no execution with id '{execution_id}'" in run.stderr
