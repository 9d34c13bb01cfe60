"""Reports and tasks cannot be forged (issue #12): a task.complete produced straight to the topic
and a Celery task pushed straight to the queue, unsigned or signed with another key, are
dead-lettered and change nothing, while the engine's own signed ones go through."""

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator

import pytest
import redis
import requests

from devtools.devstack import Stack, start_stack, wait_until
from tests.integration.kafka_topics import Record, publish, read_topic, topic, wait_consumed
from tests.integration.test_poison import DIAMOND, counted, dead_letters, node_payload
from workflows.messages import RUN_NODES_TASK, SIGNATURE_HEADER, TASK_COMPLETE
from workflows.task_queue import message
from workflowsite.celery import app as celery_app

OTHER_KEY = b"a-key-the-engine-does-not-hold-0123456789"
FORGED_OUTPUT = {"forged": True}
SLOW = {
    "name": "forged-at",
    "dag": {"nodes": [{"id": "A", "handler": "llm", "config": {"mock_latency_seconds": 6}}]},
}


def unsigned(_name: str, _value: bytes) -> list[tuple[str, bytes]]:
    return []


def signed_with_another_key(name: str, value: bytes) -> list[tuple[str, bytes]]:
    mac = hmac.new(OTHER_KEY, name.encode() + b"\0" + value, hashlib.sha256)
    return [(SIGNATURE_HEADER, mac.hexdigest().encode())]


def forged_report(execution_id: str) -> bytes:
    return json.dumps(
        {
            "execution_id": execution_id,
            "node_id": "A",
            "attempt": 1,
            "status": "COMPLETED",
            "output": FORGED_OUTPUT,
            "started_at": "2026-12-01T21:00:00+00:00",
            "finished_at": "2026-12-01T21:00:01+00:00",
            "worker": "forger",
        }
    ).encode()


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """A stack of this module's own: the session's counts its dead letters exactly (test_poison.py)."""
    running = start_stack()
    yield running
    running.close()


def test_a_forged_report_is_dead_lettered_and_the_real_one_completes_the_node(stack: Stack) -> None:
    """Without signatures the scheduler takes the forged COMPLETED report of the running node:
    the node completes with the forger's output before its handler has returned."""
    execution_id = stack.submit(SLOW, trigger=True)
    wait_until(
        lambda: stack.status(execution_id)["nodes"]["A"]["status"] == "RUNNING", 60, "node A to be running"
    )
    value = forged_report(execution_id)
    for headers in (unsigned, signed_with_another_key):
        wait_consumed(stack, TASK_COMPLETE, publish(stack, TASK_COMPLETE, [(execution_id, value)], headers))

    final = stack.wait_finished(execution_id)
    assert final["status"] == "COMPLETED"
    output = requests.get(stack.url(f"/workflows/{execution_id}/results"), timeout=10).json()["results"]["A"]
    assert output != FORGED_OUTPUT and output["model"] == "mock-llm-1"
    source = topic(stack, TASK_COMPLETE)
    letters = [letter for letter in dead_letters(stack, source) if letter.key == execution_id]
    assert sorted(letter.headers["dead_letter.reason"].decode() for letter in letters) == [
        "bad_signature",
        "missing_signature",
    ]
    assert all(letter.value == value for letter in letters)  # kept byte for byte
    wait_until(
        lambda: {"bad_signature", "missing_signature"} <= set(counted(stack, source)),
        30,
        "/metrics to count the forged reports",
    )


def test_a_forged_task_is_dead_lettered_without_running_its_handler(stack: Stack) -> None:
    """Without signatures the worker runs whatever task is pushed to its queue: the ledger shows
    the forged nodes' handlers invoked and task.complete their reports."""
    execution_id = stack.submit(DIAMOND)  # untriggered: the genuine task's report changes nothing
    payload = node_payload(execution_id)
    no_signature = json.loads(message([{**payload, "node_id": "B"}]))
    del no_signature["headers"][SIGNATURE_HEADER]
    tampered = json.loads(message([{**payload, "node_id": "C"}]))
    body = base64.b64decode(tampered["body"]).replace(b'"handler": "input"', b'"handler": "output"')
    assert body != base64.b64decode(tampered["body"])
    tampered["body"] = base64.b64encode(body).decode()
    broker = redis.Redis.from_url(stack.env.get("CELERY_BROKER_URL") or stack.env["REDIS_URL"])
    queue = stack.env["CELERY_QUEUE"]
    broker.lpush(queue, json.dumps(no_signature), json.dumps(tampered))
    broker.lpush(queue, message([payload]))  # genuine, after them: once it ran, they were taken

    wait_until(
        lambda: any(i.execution_id == execution_id for i in stack.invocations()),
        60,
        "the genuine task to run",
    )
    source = f"celery:{queue}"
    letters = wait_until(
        lambda: found if len(found := forged_letters(stack, source, execution_id)) >= 2 else None,
        30,
        "the dead letters of the forged tasks",
    )
    assert sorted(letter.headers["dead_letter.reason"].decode() for letter in letters) == [
        "bad_signature",
        "missing_signature",
    ]
    assert body in {letter.value for letter in letters}  # the body as it came off the queue
    reports = wait_until(
        lambda: found if (found := reported_nodes(stack, execution_id)) else None, 30, "the genuine report"
    )
    assert reports == ["A"]  # the forged tasks' nodes are not reported, not even as failed
    ran = [(i.node_id, i.handler) for i in stack.invocations() if i.execution_id == execution_id]
    assert ran == [("A", "input")]
    wait_until(
        lambda: {"bad_signature", "missing_signature"} <= set(counted(stack, source)),
        30,
        "/metrics to count the forged tasks",
    )
    assert stack.alive("worker")


def reported_nodes(stack: Stack, execution_id: str) -> list[str]:
    return [json.loads(r.value)["node_id"] for r in read_topic(stack, TASK_COMPLETE) if r.key == execution_id]


def forged_letters(stack: Stack, source: str, execution_id: str) -> list[Record]:
    return [letter for letter in dead_letters(stack, source) if execution_id.encode() in letter.value]


def test_a_forged_celery_map_cannot_run_the_node_task_in_process(stack: Stack) -> None:
    """Celery's built-in `celery.map` is no node task, so no signature is asked of it, and it calls
    the task it names in-process: without the guard in run_nodes it runs the forged node."""
    execution_id = stack.submit(DIAMOND)
    forged = {**node_payload(execution_id), "node_id": "B"}
    node_task = {"task": RUN_NODES_TASK, "args": [], "kwargs": {}, "options": {}, "immutable": False}
    broker_url = stack.env.get("CELERY_BROKER_URL") or stack.env["REDIS_URL"]
    with celery_app.connection_for_write(broker_url) as connection:
        celery_app.send_task(
            "celery.map",
            args=[node_task, [[forged]]],
            queue=stack.env["CELERY_QUEUE"],
            producer=celery_app.amqp.Producer(connection),
            ignore_result=True,
        )
    redis.Redis.from_url(broker_url).lpush(stack.env["CELERY_QUEUE"], message([node_payload(execution_id)]))

    wait_until(lambda: reported_nodes(stack, execution_id), 60, "the genuine task's report")
    assert [(i.node_id, i.handler) for i in stack.invocations() if i.execution_id == execution_id] == [
        ("A", "input")
    ]
    assert reported_nodes(stack, execution_id) == ["A"]
