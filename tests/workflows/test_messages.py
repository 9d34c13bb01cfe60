"""Every field of the messages the scheduler consumes, and of the workers' node payloads, is
checked against its contract: one wrong field refuses the message, naming the field."""

import json
from typing import Any

import pytest

from workflows.messages import (
    DISPATCH_FIELDS,
    InvalidMessage,
    TaskComplete,
    WorkflowStart,
    decode,
    dispatch_of,
    validate_task_payload,
)

EXECUTION_ID = "0b6f7f3e-2c1d-4c55-9f5a-3b0b8e2c9f11"
GOOD_REPORT: dict[str, Any] = {
    "execution_id": EXECUTION_ID,
    "node_id": "fetch_data-1",
    "attempt": 2,
    "status": "COMPLETED",
    "output": {"data": [1, 2, {"x": None}]},
    "error": "",
    "started_at": "2026-12-01T21:00:00.123456+00:00",
    "finished_at": "2026-12-01T21:00:01Z",
    "worker": "worker@host",
}
GOOD_PAYLOAD: dict[str, Any] = {
    "execution_id": EXECUTION_ID,
    "node_id": "fetch_data-1",
    "position": 0,
    "attempt": 1,
    "handler": "llm",
    "config": {"prompt": "hi"},
    "upstream": {},
    "timeout_seconds": 30,
}


def test_a_good_report_is_accepted_with_every_field() -> None:
    report = TaskComplete.from_json(GOOD_REPORT)
    assert report == TaskComplete(**GOOD_REPORT)


def test_unknown_fields_are_ignored_and_optional_ones_default() -> None:
    required = {key: GOOD_REPORT[key] for key in ("execution_id", "node_id", "attempt", "status")}
    report = TaskComplete.from_json({**required, "from_a_newer_worker": [1]})
    assert report == TaskComplete(EXECUTION_ID, "fetch_data-1", 2, "COMPLETED")
    assert TaskComplete.from_json({**GOOD_REPORT, "started_at": None}).started_at is None


def test_an_upper_case_execution_id_is_made_canonical() -> None:
    report = TaskComplete.from_json({**GOOD_REPORT, "execution_id": EXECUTION_ID.upper()})
    assert report.execution_id == EXECUTION_ID


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("execution_id", "not-a-uuid"),
        ("execution_id", 12345),
        ("execution_id", None),
        ("node_id", ["A"]),
        ("node_id", "has space"),
        ("node_id", "x" * 129),
        ("node_id", ""),
        ("attempt", "1"),
        ("attempt", True),
        ("attempt", 0),
        ("attempt", 1.0),
        ("status", "DONE"),
        ("status", None),
        ("error", {"message": "x"}),
        ("error", None),
        ("started_at", 1764622800),
        ("started_at", "yesterday"),
        ("started_at", "2026-12-01T21:00:00"),
        ("finished_at", ["2026-12-01"]),
        ("worker", 7),
    ],
)
def test_a_report_with_one_wrong_field_is_refused_naming_it(name: str, value: object) -> None:
    with pytest.raises(InvalidMessage) as refused:
        TaskComplete.from_json({**GOOD_REPORT, name: value})
    assert refused.value.reason == f"invalid_{name}"
    assert f"'{name}'" in str(refused.value)


@pytest.mark.parametrize("name", ["execution_id", "node_id", "attempt", "status"])
def test_a_report_missing_a_required_field_is_refused(name: str) -> None:
    data = {key: value for key, value in GOOD_REPORT.items() if key != name}
    with pytest.raises(InvalidMessage, match="missing") as refused:
        TaskComplete.from_json(data)
    assert refused.value.reason == f"invalid_{name}"


def test_a_workflow_start_needs_a_uuid_execution_id() -> None:
    assert WorkflowStart.from_json({"execution_id": EXECUTION_ID, "extra": 1}).execution_id == EXECUTION_ID
    for bad in ({}, {"execution_id": "x"}, {"execution_id": [EXECUTION_ID]}):
        with pytest.raises(InvalidMessage) as refused:
            WorkflowStart.from_json(bad)
        assert refused.value.reason == "invalid_execution_id"


@pytest.mark.parametrize(
    ("value", "reason"),
    [(b"{not json", "not_json"), (b"\xff\xfe", "not_json"), (None, "not_object"), (b"[1, 2]", "not_object")],
)
def test_a_value_that_is_not_a_json_object_is_refused(value: bytes | None, reason: str) -> None:
    with pytest.raises(InvalidMessage) as refused:
        decode(value)
    assert refused.value.reason == reason


def test_a_good_node_payload_is_accepted_as_it_came() -> None:
    assert validate_task_payload(GOOD_PAYLOAD) is GOOD_PAYLOAD  # typed, not copied
    validate_task_payload({**GOOD_PAYLOAD, "timeout_seconds": None, "input": {"topic": "x"}})


def test_the_dispatch_announcement_carries_its_fields_only() -> None:
    """task.dispatch is an audit stream: the upstream outputs and the workflow input stay off it."""
    announced = dispatch_of({**GOOD_PAYLOAD, "upstream": {"A": 1}, "input": {"secret": 1}})

    assert announced == {
        "execution_id": EXECUTION_ID,
        "node_id": "fetch_data-1",
        "attempt": 1,
        "handler": "llm",
        "config": {"prompt": "hi"},
    }
    assert tuple(announced) == DISPATCH_FIELDS


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("execution_id", "nope"),
        ("node_id", 3),
        ("attempt", -1),
        ("handler", None),
        ("config", "prompt"),
        ("config", None),
        ("upstream", []),
        ("input", "x"),
        ("timeout_seconds", 0),
        ("timeout_seconds", "30"),
        ("timeout_seconds", True),
        ("timeout_seconds", float("inf")),
    ],
)
def test_a_node_payload_with_one_wrong_field_is_refused_naming_it(name: str, value: object) -> None:
    with pytest.raises(InvalidMessage) as refused:
        validate_task_payload({**GOOD_PAYLOAD, name: value})
    assert refused.value.reason == f"invalid_{name}"


def test_a_node_payload_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(InvalidMessage) as refused:
        validate_task_payload(json.loads("[1]"))
    assert refused.value.reason == "not_object"


def test_a_workflow_start_reads_back_what_it_writes() -> None:
    start = WorkflowStart(EXECUTION_ID)
    assert start.to_json() == {"execution_id": EXECUTION_ID}
    assert WorkflowStart.from_json(json.loads(json.dumps(start.to_json()))) == start
