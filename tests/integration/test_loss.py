"""Loss is declared on evidence: a deep queue is never a lost attempt, a lost start is re-run."""

import json
import signal
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from devtools.devstack import Stack, start_stack, wait_until
from workflows.scheduler.reconciler import WORKERS_KEY

# One worker running two nodes at a time, every node a task of its own: the queue of a fan-out of
# BACKLOG_WIDTH half-second nodes takes about BACKLOG_WIDTH * 0.5 / 2 = 30 s to drain on a quiet
# machine, many times a node's timeout plus the scheduler's grace (2 + 5 s).
BACKLOG_WIDTH = 120
BACKLOG_LATENCY_S = 0.5
BACKLOG_TIMEOUT_S = 2
BACKLOG_DEADLINE_S = 240.0


@pytest.fixture(scope="module")
def narrow_stack() -> Iterator[Stack]:
    running = start_stack({"WORKFLOW_MAX_NODES_PER_TASK": "1"}, worker_concurrency=2)
    yield running
    running.close()


def fan_out(name: str, width: int, latency_s: float, timeout_s: float) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = [{"id": "source", "handler": "input", "config": {"topic": name}}]
    nodes.extend(
        {
            "id": f"leaf{index}",
            "handler": "llm",
            "dependencies": ["source"],
            "timeout_seconds": timeout_s,
            "config": {"prompt": "on {{ source.topic }}", "mock_latency_seconds": latency_s},
        }
        for index in range(width)
    )
    nodes.append({"id": "sink", "handler": "output", "dependencies": [n["id"] for n in nodes[1:]]})
    return {"name": name, "dag": {"nodes": nodes}}


def test_a_backlog_far_deeper_than_the_node_timeouts_loses_no_attempt(narrow_stack: Stack) -> None:
    stack = narrow_stack
    workflow = fan_out("backlog", BACKLOG_WIDTH, BACKLOG_LATENCY_S, BACKLOG_TIMEOUT_S)
    started = time.monotonic()
    execution_id = stack.submit(workflow, trigger=True)
    state = stack.wait_finished(execution_id, BACKLOG_DEADLINE_S)
    drained_s = time.monotonic() - started
    print(f"a queue of {BACKLOG_WIDTH} nodes drained in {drained_s:.1f}s")
    assert state["status"] == "COMPLETED", state
    assert drained_s > 3 * (BACKLOG_TIMEOUT_S + 5), "the queue drained too fast to test a backlog"
    kinds = Counter(event["kind"] for event in stack.events(execution_id))
    assert kinds["node_lost"] == 0, kinds
    assert kinds["node_completed"] == BACKLOG_WIDTH + 2, kinds
    assert {detail["attempt"] for detail in state["nodes"].values()} == {1}


def test_an_execution_whose_workflow_start_was_lost_is_started_by_the_reconciler(
    narrow_stack: Stack,
) -> None:
    """The trigger's outbox row is deleted before any relay could publish it (the scheduler,
    which relays, is stopped): the execution is RUNNING in the database and nothing announces it."""
    stack = narrow_stack
    stack.stop("scheduler", signal.SIGTERM)
    try:
        execution_id = stack.submit(fan_out("lost-start", 3, 0, 10), trigger=True)
        deleted = stack.manage(
            "shell",
            "-c",
            "from workflows.models import OutboxMessage; print(OutboxMessage.objects.all().delete()[0])",
        )
        assert deleted.stdout.split()[-1] == "1", deleted.stdout
    finally:
        stack.start("scheduler")
    state = stack.wait_finished(execution_id, 90)
    assert state["status"] == "COMPLETED", state
    kinds = [event["kind"] for event in stack.events(execution_id)]
    assert kinds[:3] == ["submitted", "triggered", "started"], kinds


def test_a_worker_publishes_what_it_holds_and_deletes_its_heartbeat_on_a_warm_shutdown(
    narrow_stack: Stack,
) -> None:
    stack = narrow_stack
    client = redis.Redis.from_url(stack.env["REDIS_URL"])
    prefix = stack.worker_hostname("worker") + "/"

    def heartbeat() -> dict | None:
        fields = [f for f in client.hkeys(WORKERS_KEY) if f.decode().startswith(prefix)]
        return json.loads(client.hget(WORKERS_KEY, fields[0])) if fields else None

    execution_id = stack.submit(fan_out("held", 1, 3, 10), trigger=True)

    def holding_leaf() -> list | None:
        beat = heartbeat()
        held = [entry for entry in beat["held"] if entry[1] == "leaf0"] if beat else []
        return held if held and held[0][3] is not None else None  # claimed: it has a running time

    (leaf,) = wait_until(holding_leaf, 30, "the worker to run the 3 s node")
    assert leaf[:3] == [execution_id, "leaf0", 1] and leaf[4:] == [10, False], leaf
    assert stack.wait_finished(execution_id)["status"] == "COMPLETED"
    stack.stop("worker", signal.SIGTERM)
    try:
        assert heartbeat() is None
    finally:
        stack.start("worker")
