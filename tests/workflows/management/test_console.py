"""The operator commands' shared parts: reading files, describing problems, progress, status."""

import argparse
import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from workflows.management import console
from workflows.management.console import InputError, LoadedWorkflow, ProgressDisplay

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
VALID_EXAMPLES = sorted(path for path in EXAMPLES.glob("*.json") if path.name != "cyclic.json")


def write(tmp_path: Path, text: str, name: str = "workflow.json") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def state(status: str = "RUNNING", **node_states: str) -> dict[str, Any]:
    """An execution_status() result with the given node states."""
    completed = sum(value == "COMPLETED" for value in node_states.values())
    failed = sum(value == "FAILED" for value in node_states.values())
    return {
        "execution_id": "0e5a7a4e-0000-4000-8000-000000000001",
        "name": "Diamond",
        "status": status,
        "progress": {"total": len(node_states), "completed": completed, "failed": failed},
        "node_states": node_states,
        "nodes": {node_id: {"status": value} for node_id, value in node_states.items()},
        "error": None,
        "created_at": "2026-01-02T03:04:05.000000+00:00",
        "started_at": "2026-01-02T03:04:05.100000+00:00",
        "finished_at": "2026-01-02T03:04:06.350000+00:00" if status != "RUNNING" else None,
    }


# ---------------------------------------------------------------- reading input


def test_read_json_reads_a_file_with_or_without_a_byte_order_mark(tmp_path: Path) -> None:
    assert console.read_json(write(tmp_path, '{"a": [1, 2]}')) == {"a": [1, 2]}
    assert console.read_json(write(tmp_path, '\ufeff{"a": 1}', "bom.json")) == {"a": 1}


def test_invalid_json_names_the_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, '{\n  "name": "x",\n  "dag": }\n')
    with pytest.raises(InputError) as caught:
        console.read_json(path)
    assert str(caught.value) == f"{path}: invalid JSON at line 3, column 10: Expecting value"


def test_empty_file_is_invalid_json_at_line_1_column_1(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    with pytest.raises(InputError, match=r"invalid JSON at line 1, column 1: Expecting value"):
        console.read_json(path)


def test_missing_file_and_directory_give_the_path_and_the_os_reason(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    with pytest.raises(InputError) as caught:
        console.read_json(str(missing))
    assert str(caught.value) == f"{missing}: cannot read: No such file or directory"
    with pytest.raises(InputError) as caught:
        console.read_json(str(tmp_path))
    assert str(caught.value) == f"{tmp_path}: cannot read: Is a directory"


def test_a_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes('{"name": "caf\xe9"}'.encode("latin-1"))
    with pytest.raises(
        InputError, match=r"latin1\.json: not UTF-8 text: invalid continuation byte at byte 13"
    ):
        console.read_json(str(path))


def test_input_option_takes_inline_json_or_a_file(tmp_path: Path) -> None:
    assert console.parse_input_option('{"topic": "dogs"}') == {"topic": "dogs"}
    path = write(tmp_path, '{"topic": "owls", "n": 2}', "input.json")
    assert console.parse_input_option(f"@{path}") == {"topic": "owls", "n": 2}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("[1, 2]", "--input: workflow input must be a JSON object, got array"),
        ('{"topic": }', "--input: invalid JSON at line 1, column 11: Expecting value"),
        ("@/nonexistent/input.json", "/nonexistent/input.json: cannot read: No such file or directory"),
    ],
)
def test_input_option_errors_are_precise(value: str, message: str) -> None:
    with pytest.raises(InputError) as caught:
        console.parse_input_option(value)
    assert str(caught.value) == message


def test_positive_seconds() -> None:
    assert console.positive_seconds("2.5") == 2.5
    for text in ("0", "-1", "soon", "inf", "nan"):
        with pytest.raises(argparse.ArgumentTypeError):
            console.positive_seconds(text)


# ---------------------------------------------------------------- validating workflows


@pytest.mark.parametrize("path", VALID_EXAMPLES, ids=lambda path: path.name)
def test_every_example_except_the_cyclic_one_validates(path: Path) -> None:
    loaded = console.load_workflow(str(path))
    assert loaded.spec.nodes


def test_the_examples_are_all_there() -> None:
    names = {path.name for path in EXAMPLES.glob("*.json")}
    assert names >= {
        "linear.json",
        "parallel.json",
        "diamond.json",
        "cyclic.json",
        "data_passing.json",
        "input_parameters.json",
    }


def test_the_cyclic_example_is_rejected_for_its_cycle() -> None:
    path = str(EXAMPLES / "cyclic.json")
    with pytest.raises(InputError) as caught:
        console.load_workflow(path)
    assert str(caught.value) == (
        f"{path}: invalid workflow: cycle detected: A -> B -> C -> A (at dag.nodes[0].dependencies[0])"
    )


def test_every_problem_of_an_invalid_workflow_is_listed_with_field_and_node(tmp_path: Path) -> None:
    workflow = {
        "name": "Bad",
        "dag": {
            "nodes": [
                {"id": "A", "handler": "input"},
                {"id": "B", "handler": "nope", "dependencies": ["A", "Z"]},
                {"id": "A", "handler": "llm"},
            ]
        },
    }
    path = write(tmp_path, json.dumps(workflow))
    with pytest.raises(InputError) as caught:
        console.load_workflow(path)
    lines = str(caught.value).splitlines()
    assert lines[0].startswith(f"{path}: invalid workflow: node 'B': unknown handler 'nope'")
    assert lines[0].endswith("; and 2 more problems")
    assert lines[1].startswith("  - dag.nodes[1].handler: node 'B': unknown handler 'nope'; known handlers:")
    assert lines[2] == "  - dag.nodes[1].dependencies[1]: node 'B': depends on unknown node 'Z'"
    assert lines[3] == (
        "  - dag.nodes[2].id (node 'A'): node id 'A' is used twice: dag.nodes[0] and dag.nodes[2]"
    )


def test_problem_line_without_a_field_or_node() -> None:
    assert console.problem_line(
        {"field": "", "message": "a workflow must be a JSON object", "node": None}
    ) == ("workflow: a workflow must be a JSON object")


def test_load_each_keeps_order_and_reports_every_file(tmp_path: Path) -> None:
    good = str(EXAMPLES / "diamond.json")
    bad = write(tmp_path, "{", "bad.json")
    results = console.load_each([bad, good, str(tmp_path / "gone.json")])
    assert [type(result) for result in results] == [InputError, LoadedWorkflow, InputError]


def test_validate_workflow_command_prints_ok_or_problems_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write(tmp_path, '{"name": "x"}', "bad.json")
    with pytest.raises(CommandError) as caught:
        call_command("validate_workflow", str(EXAMPLES / "diamond.json"), bad)
    assert caught.value.returncode == console.EXIT_INVALID
    assert str(caught.value) == "1 of 2 file(s) invalid"
    out, err = capsys.readouterr()
    assert f"{EXAMPLES / 'diamond.json'}: OK (4 nodes)" in out
    assert f"{bad}: invalid workflow: the workflow has no dag (at dag)" in err


# ---------------------------------------------------------------- progress


def test_progress_text_counts_nodes_and_names_running_and_queued_ones() -> None:
    running = state(A="COMPLETED", B="RUNNING", C="RUNNING", D="QUEUED", E="PENDING")
    assert console.progress_text(running) == "RUNNING 1/5 nodes, running: B, C, queued: D"


def test_progress_text_of_a_finished_execution_gives_failures_and_duration() -> None:
    failed = state("FAILED", A="COMPLETED", B="FAILED", C="SKIPPED")
    assert console.progress_text(failed) == "FAILED 1/3 nodes, 1 failed, in 1.250s"


def test_many_running_names_are_cut_short() -> None:
    many = state(**{f"N{i}": "RUNNING" for i in range(7)})
    assert console.progress_text(many) == "RUNNING 0/7 nodes, running: N0, N1, N2, N3 +3 more"


def test_progress_bar() -> None:
    assert console.progress_bar(1, 4, width=8) == "[##------]"
    assert console.progress_bar(4, 4, width=8) == "[########]"
    assert console.progress_bar(0, 0, width=4) == "[----]"


def test_progress_line_plain_and_with_a_bar_cut_to_the_terminal_width() -> None:
    running = state(A="COMPLETED", B="RUNNING")
    assert console.progress_line("diamond.json", running) == "diamond.json: RUNNING 1/2 nodes, running: B"
    with_bar = console.progress_line("diamond.json", running, bar=True)
    assert with_bar == f"diamond.json [{'#' * 10}{'-' * 10}] RUNNING 1/2 nodes, running: B"
    cut = console.progress_line("diamond.json", running, bar=True, width=30)
    assert len(cut) == 30 and cut.endswith("...")


def test_plain_display_prints_a_line_only_when_it_changes() -> None:
    stream = io.StringIO()
    display = ProgressDisplay(stream.write, ["a.json", "b.json"], terminal=False)
    first, second = state(A="RUNNING"), state(A="QUEUED")
    display.show([first, second])
    display.show([first, second])
    display.show([first, state("COMPLETED", A="COMPLETED")])
    assert stream.getvalue().splitlines() == [
        "a.json: RUNNING 0/1 nodes, running: A",
        "b.json: RUNNING 0/1 nodes, queued: A",
        "b.json: COMPLETED 1/1 nodes, in 1.250s",
    ]


def test_terminal_display_redraws_one_line_per_execution_in_place() -> None:
    stream = io.StringIO()
    display = ProgressDisplay(stream.write, ["a.json", "long.json"], terminal=True, width=200)
    display.show([state(A="RUNNING"), state(A="RUNNING")])
    first_frame = stream.getvalue()
    assert console.CURSOR_UP.format(2) not in first_frame
    assert first_frame.count("\n") == 2
    assert f"{console.CLEAR_LINE}a.json    [" in first_frame  # labels padded so the bars line up
    display.show([state(A="RUNNING"), state(A="RUNNING")])
    assert stream.getvalue() == first_frame  # nothing changed, nothing drawn
    display.show([state("COMPLETED", A="COMPLETED"), state(A="RUNNING")])
    second_frame = stream.getvalue()[len(first_frame) :]
    assert second_frame.startswith(console.CURSOR_UP.format(2) + console.CLEAR_LINE + "a.json")
    assert "COMPLETED 1/1 nodes" in second_frame and second_frame.count("\n") == 2


class FakeClock:
    """A clock that advances only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_wait_for_polls_until_every_execution_finished_and_stops_polling_finished_ones() -> None:
    sequences = {
        "one": [state(A="RUNNING"), state("COMPLETED", A="COMPLETED")],
        "two": [state(A="QUEUED"), state(A="RUNNING"), state("FAILED", A="FAILED")],
    }
    polls: list[str] = []

    def status_of(execution_id: str) -> dict[str, Any]:
        polls.append(execution_id)
        return sequences[execution_id].pop(0)

    clock = FakeClock()
    display = ProgressDisplay(io.StringIO().write, ["one", "two"], terminal=False)
    states = console.wait_for(
        ["one", "two"], status_of=status_of, display=display, timeout_s=10, clock=clock, sleep=clock.sleep
    )
    assert [item["status"] for item in states] == ["COMPLETED", "FAILED"]
    assert polls == ["one", "two", "one", "two", "two"]
    assert clock.sleeps == [console.POLL_INTERVAL_S, console.POLL_INTERVAL_S]


def test_wait_for_gives_up_at_the_deadline_without_sleeping_past_it() -> None:
    clock = FakeClock()
    display = ProgressDisplay(io.StringIO().write, ["slow"], terminal=False)
    states = console.wait_for(
        ["slow"],
        status_of=lambda _: state(A="RUNNING"),
        display=display,
        timeout_s=0.5,
        clock=clock,
        sleep=clock.sleep,
    )
    assert states[0]["status"] == "RUNNING"
    assert clock.now == pytest.approx(0.5)
    assert clock.sleeps[-1] == pytest.approx(0.1)


def test_outcome_problems_exit_codes() -> None:
    completed = state("COMPLETED", A="COMPLETED")
    failed = {**state("FAILED", A="FAILED"), "error": "node 'A' failed: HTTP 500"}
    running = state(A="RUNNING")
    assert console.outcome_problems(["a"], [completed], 60) == (0, "")
    code, message = console.outcome_problems(["a", "b", "c"], [completed, failed, running], 60)
    assert code == console.EXIT_FAILED
    assert message.splitlines() == [
        f"b: execution {failed['execution_id']} FAILED: node 'A' failed: HTTP 500",
        f"c: execution {running['execution_id']} unfinished after 1m00s: RUNNING 0/1 nodes, running: A",
    ]
    code, message = console.outcome_problems(["c"], [running], 2.5)
    assert code == console.EXIT_TIMED_OUT
    assert message.startswith("timed out:\n") and "unfinished after 2.500s: RUNNING" in message


# ---------------------------------------------------------------- status


def test_format_moment_in_utc() -> None:
    assert console.format_moment("2026-01-02T05:04:05.123456+02:00") == "2026-01-02 03:04:05.123 UTC"
    assert console.format_moment("2026-01-02T03:04:05.123456+00:00", with_date=False) == "03:04:05.123"
    assert console.format_moment(None) == "-"


def test_status_lines_show_timings_error_and_a_row_per_node() -> None:
    status = state("FAILED", A="COMPLETED", B="FAILED", C="SKIPPED")
    status["error"] = "node 'B' failed: HTTP 500 from http://down"
    status["nodes"] = {
        "A": {
            "status": "COMPLETED",
            "handler": "input",
            "attempt": 1,
            "started_at": "2026-01-02T03:04:05.200000+00:00",
            "finished_at": "2026-01-02T03:04:05.250000+00:00",
            "worker": "worker-1@host",
            "error": None,
        },
        "B": {
            "status": "FAILED",
            "handler": "call_external_service",
            "attempt": 3,
            "started_at": "2026-01-02T03:04:05.300000+00:00",
            "finished_at": "2026-01-02T03:04:06.300000+00:00",
            "worker": "worker-2@host",
            "error": "HTTP 500 from http://down",
        },
        "C": {"status": "SKIPPED", "handler": "output", "attempt": 0},
    }
    lines = console.status_lines(status)
    assert lines[:7] == [
        f"Execution {status['execution_id']}  Diamond",
        "Status:   FAILED  (1/3 nodes completed, 1 failed)",
        "Created:  2026-01-02 03:04:05.000 UTC",
        "Started:  2026-01-02 03:04:05.100 UTC",
        "Finished: 2026-01-02 03:04:06.350 UTC",
        "Duration: 1.250s",
        "Error:    node 'B' failed: HTTP 500 from http://down",
    ]
    assert lines[7] == ""
    header, rule, *rows = lines[8:13]
    assert header.split() == list(console.NODE_COLUMNS)
    assert set(rule) <= {"-", " "}
    assert rows[0].split() == [
        "A",
        "input",
        "COMPLETED",
        "1",
        "03:04:05.200",
        "03:04:05.250",
        "0.050s",
        "worker-1@host",
    ]
    assert rows[1].split()[:4] == ["B", "call_external_service", "FAILED", "3"]
    assert rows[2].split() == ["C", "output", "SKIPPED", "0", "-", "-", "-", "-"]
    assert lines[13:] == ["", "Node errors:", "  B: HTTP 500 from http://down"]


def test_table_aligns_columns() -> None:
    assert console.table(["ID", "STATUS"], [["A", "RUNNING"], ["LONGER", "-"]]) == [
        "ID      STATUS",
        "------  -------",
        "A       RUNNING",
        "LONGER  -",
    ]
