"""No message can crash-loop a consumer, and a dead scheduler is visible: malformed reports and
starts on the real topics, malformed node payloads on the real Celery queue, a stopped scheduler.

Each malformed message is skipped (offset committed), copied to the dead-letter topic with its
reason, and counted in /metrics, and the engine goes on: a workflow submitted after them completes.
"""

import json
import signal
from collections import Counter
from typing import Any

import redis
import requests
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from devtools.devstack import Stack, wait_until
from tests.integration.kafka_topics import Record, kafka_config, publish, read_topic, topic, wait_consumed
from workflows.messages import DEAD_LETTER, TASK_COMPLETE, WORKFLOW_START
from workflows.task_queue import message

HEALTH_DEADLINE_S = 60.0
GOOD_REPORT: dict[str, Any] = {
    "node_id": "A",
    "attempt": 1,
    "status": "COMPLETED",
    "output": {},
    "error": "",
    "started_at": "2026-12-01T21:00:00+00:00",
    "finished_at": "2026-12-01T21:00:01+00:00",
    "worker": "forger",
}
DIAMOND = {
    "name": "after-the-poison",
    "dag": {
        "nodes": [
            {"id": "A", "handler": "input", "config": {"topic": "cats"}},
            {"id": "B", "handler": "llm", "dependencies": ["A"], "config": {"prompt": "{{ A.topic }}"}},
            {"id": "C", "handler": "llm", "dependencies": ["A"], "config": {"prompt": "on {{ A.topic }}"}},
            {"id": "D", "handler": "output", "dependencies": ["B", "C"]},
        ]
    },
}


def report(execution_id: str, **wrong: Any) -> bytes:
    return json.dumps({**GOOD_REPORT, "execution_id": execution_id, **wrong}).encode()


def node_payload(execution_id: str) -> dict[str, Any]:
    """A good payload of node A's first attempt, as the scheduler builds it."""
    return {
        "execution_id": execution_id,
        "node_id": "A",
        "position": 0,
        "attempt": 1,
        "handler": "input",
        "config": {"topic": "dogs"},
        "upstream": {},
        "timeout_seconds": 30,
    }


def dead_letters(stack: Stack, source: str) -> list[Record]:
    """The dead letters that came from `source` (a real topic name, or the Celery queue)."""
    return [
        record
        for record in read_topic(stack, DEAD_LETTER)
        if record.headers.get("dead_letter.source") == source.encode()
    ]


def counted(stack: Stack, source: str) -> Counter[str]:
    """workflows_dead_letters_total for `source`, by reason, as one scrape of /metrics shows it."""
    text = requests.get(stack.url("/metrics"), timeout=10).text
    found: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "workflows_dead_letters_total" and sample.labels["source"] == source:
                found[sample.labels["reason"]] += int(sample.value)
    return found


def test_malformed_reports_and_starts_are_dead_lettered_and_the_scheduler_goes_on(stack: Stack) -> None:
    """On main the report with "not-a-uuid" reaches the database lookup and raises: the scheduler
    exits, and every restart reads the same uncommitted message again."""
    victim = stack.submit(DIAMOND)  # real, never triggered: reports about it must change nothing
    malformed_reports = {
        "not_json": b"{not json",
        "not_object": b"[1, 2, 3]",
        "invalid_execution_id": report("not-a-uuid"),
        "invalid_node_id": report(victim, node_id=["A"]),
        "invalid_attempt": report(victim, attempt="1"),
        "invalid_status": report(victim, status="DONE"),
        "invalid_error": report(victim, status="FAILED", error={"why": "no"}),
        "invalid_started_at": report(victim, started_at=1764622800),
        "invalid_finished_at": report(victim, finished_at="yesterday"),
        "invalid_worker": report(victim, worker=7),
    }
    malformed_starts = {"invalid_execution_id": b'{"execution_id": 42}', "not_object": b"null"}
    at_reports = publish(stack, TASK_COMPLETE, [(victim, value) for value in malformed_reports.values()])
    at_starts = publish(stack, WORKFLOW_START, [(victim, value) for value in malformed_starts.values()])

    execution_id = stack.submit(DIAMOND, trigger=True)
    assert stack.wait_finished(execution_id)["status"] == "COMPLETED"
    wait_consumed(stack, TASK_COMPLETE, at_reports)
    wait_consumed(stack, WORKFLOW_START, at_starts)
    assert stack.alive("scheduler")
    assert stack.status(victim)["status"] == "PENDING"

    for name, malformed in ((TASK_COMPLETE, malformed_reports), (WORKFLOW_START, malformed_starts)):
        source = topic(stack, name)
        letters = wait_until(
            lambda source=source, malformed=malformed: (
                found if len(found := dead_letters(stack, source)) >= len(malformed) else None
            ),
            30,
            f"the dead letters from {name}",
        )
        by_value = {record.value: record for record in letters}
        for reason, value in malformed.items():
            letter = by_value[value]  # the original value, byte for byte
            assert letter.headers["dead_letter.reason"].decode() == reason
            assert letter.headers["dead_letter.detail"], letter
            assert letter.key == victim
        expected = Counter(malformed.keys())
        wait_until(
            lambda source=source, expected=expected: counted(stack, source) == expected,
            30,
            f"/metrics to count the dead letters of {name}",
        )


def test_malformed_node_payloads_are_dead_lettered_and_the_rest_of_the_task_runs(stack: Stack) -> None:
    """On main a payload that is not an object raises in the task before any node runs (the
    task fails, and its good payload is never reported)."""
    execution_id = stack.submit(DIAMOND)  # untriggered: the worker's report changes nothing
    good = node_payload(execution_id)
    bad = {
        "invalid_attempt": {**good, "node_id": "B", "attempt": "x"},
        "unknown_handler": {**good, "node_id": "C", "handler": "rm -rf"},
        "invalid_config": {**good, "node_id": "D", "config": ["not", "a", "dict"]},
        "not_object": "just a string",
    }
    broker = redis.Redis.from_url(stack.env.get("CELERY_BROKER_URL") or stack.env["REDIS_URL"])
    broker.lpush(stack.env["CELERY_QUEUE"], message([*bad.values(), good]))

    def reported() -> dict[str, str] | None:
        reports = [json.loads(r.value) for r in read_topic(stack, TASK_COMPLETE) if r.key == execution_id]
        return {report["node_id"]: report["status"] for report in reports} if len(reports) >= 3 else None

    # the payloads that name their node (C, D) fail it too, or it would stay QUEUED forever
    assert wait_until(reported, 30, "the reports") == {"A": "COMPLETED", "C": "FAILED", "D": "FAILED"}
    source = f"celery:{stack.env['CELERY_QUEUE']}"
    letters = wait_until(
        lambda: found if len(found := dead_letters(stack, source)) >= len(bad) else None,
        30,
        "the dead letters of the bad payloads",
    )
    assert sorted(letter.headers["dead_letter.reason"].decode() for letter in letters) == sorted(bad)
    wait_until(lambda: counted(stack, source) == Counter(bad.keys()), 30, "/metrics to count them")
    assert stack.alive("worker")


def test_a_stopped_scheduler_turns_health_503_naming_it_and_back_to_200_when_started(stack: Stack) -> None:
    """On main /health knows nothing of the scheduler: it answers 200 with none running."""
    try:
        stack.stop("scheduler", signal.SIGKILL)  # no goodbye: its heartbeat has to expire

        def unhealthy() -> dict[str, Any] | None:
            response = stack.health()
            return response.json() if response.status_code == 503 else None

        body = wait_until(unhealthy, HEALTH_DEADLINE_S, "/health to be 503", 0.5)
        assert body["down"] == ["scheduler"], body
        assert body["dependencies"]["scheduler"]["status"] == "down"
        assert "no scheduler is alive" in body["dependencies"]["scheduler"]["error"]
        text = requests.get(stack.url("/metrics"), timeout=10).text
        assert "workflows_schedulers_alive 0.0" in text

        stack.start("scheduler")
        wait_until(lambda: stack.health().status_code == 200, HEALTH_DEADLINE_S, "/health to be 200", 0.2)
        execution_id = stack.submit(DIAMOND, trigger=True)
        assert stack.wait_finished(execution_id)["status"] == "COMPLETED"
    finally:
        stack.restore()


def test_a_report_the_database_refuses_fails_its_execution_only(stack: Stack) -> None:
    """A well-typed report whose output JSON holds 1e400 (infinity, which Python's json reads and
    neither SQLite's JSON check nor PostgreSQL's jsonb accepts) trips the batch's transaction
    for good. On main the refusal counts as a database outage: the batch is retried forever and
    the scheduler applies nothing else."""
    slow = {
        "name": "poisoned-by-its-output",
        "dag": {
            "nodes": [
                {"id": "slow", "handler": "llm", "config": {"prompt": "x", "mock_latency_seconds": 3}},
                {"id": "after", "handler": "output", "dependencies": ["slow"]},
            ]
        },
    }
    victim = stack.submit(slow, trigger=True)

    def running_attempt() -> int | None:
        node = stack.status(victim)["nodes"]["slow"]
        return node["attempt"] if node["status"] == "RUNNING" else None

    attempt = wait_until(running_attempt, 30, "the slow node to run", 0.1)
    poison = report(victim, node_id="slow", attempt=attempt).replace(
        b'"output": {}', b'"output": {"x": 1e400}'
    )
    at = publish(stack, TASK_COMPLETE, [(victim, poison)])
    bystander = stack.submit(DIAMOND, trigger=True)

    state = stack.wait_finished(victim)
    assert state["status"] == "FAILED", state
    assert "could not apply a message" in state["error"] and "dead-letter topic" in state["error"], state
    assert stack.wait_finished(bystander)["status"] == "COMPLETED"
    wait_consumed(stack, TASK_COMPLETE, at)
    (letter,) = [
        record for record in dead_letters(stack, topic(stack, TASK_COMPLETE)) if record.value == poison
    ]
    assert letter.headers["dead_letter.reason"] == b"handler_error"
    assert stack.alive("scheduler")


def test_a_malformed_message_too_large_to_dead_letter_whole_is_kept_truncated(stack: Stack) -> None:
    """Bug: a value the broker took (1,000,000 bytes) is over the producer's limit once the dead
    letter's headers are added; the refusal was retried as an outage, so the scheduler stopped
    applying anything, exited after WORKFLOW_SCHEDULER_GIVE_UP_SECONDS and read it again."""
    value = b"x" * 1_000_000  # not JSON
    producer = Producer({**kafka_config(stack), "message.max.bytes": 1_048_576})
    producer.produce(topic(stack, TASK_COMPLETE), key=b"huge", value=value)
    assert producer.flush(30) == 0

    execution_id = stack.submit(DIAMOND, trigger=True)
    assert stack.wait_finished(execution_id)["status"] == "COMPLETED"
    assert stack.alive("scheduler")
    letters = wait_until(
        lambda: [r for r in dead_letters(stack, topic(stack, TASK_COMPLETE)) if r.key == "huge"],
        30,
        "the truncated dead letter",
    )
    assert letters[0].headers["dead_letter.truncated_from_bytes"] == b"1000000"
    assert letters[0].value == value[: 512 * 1024]
