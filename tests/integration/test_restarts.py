"""Redis and Kafka restarted again and again, at random moments, while executions run; a worker
that hit the cap of abandoned handlers retires itself.

One restart at one moment can be lucky (the first Redis restart of a run often was, before the
broker transport's guard in workflowsite/broker.py); so each test restarts its service several
times, each at a random moment after nodes have started running, on the private stack of
`fault_stack` with two workers. Afterwards every process must still be alive (the stack runs no
supervisor, so a process that died stays dead), every execution must be COMPLETED, and the
invocation ledger (devtools/ledger.py) must show every node's handler invoked exactly once: no
worker is killed here, so no re-run is excused.

Nodes keep the default timeout (300 s): a task that died with Redis is dispatched again on the
reconciler's evidence (the broker's epoch changed and nothing carries the attempt), so these tests
also fail when that recovery waits for a timer.
"""

import os
import random
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devtools.devstack import Stack, wait_until
from devtools.ledger import beyond_at_least_once

WORKERS = ("worker", "worker2")
PROCESSES = ("api", "scheduler", *WORKERS)
REDIS_RESTARTS = 4
KAFKA_RESTARTS = 2
EXECUTIONS_PER_ROUND = 6
RUNNING_DEADLINE_S = 60.0
FINISH_DEADLINE_S = 180.0
EXIT_DEADLINE_S = 60.0
MAX_FAULT_DELAY_S = 1.5
SEED = int(os.environ.get("RESTART_TEST_SEED", str(time.time_ns() % 10**6)))


def diamond(name: str) -> dict[str, Any]:
    """An input, two mocked calls of random latency quoting it, an output over both."""
    return {
        "name": name,
        "dag": {
            "nodes": [
                {"id": "a", "handler": "input", "config": {"topic": name}},
                {
                    "id": "b",
                    "handler": "llm",
                    "dependencies": ["a"],
                    "config": {"prompt": "about {{ a.topic }}", "mock_latency_seconds": [0.1, 1.0]},
                },
                {
                    "id": "c",
                    "handler": "call_external_service",
                    "dependencies": ["a"],
                    "config": {"url": "http://svc.example/{{ a.topic }}", "mock_latency_seconds": [0.1, 1.0]},
                },
                {"id": "d", "handler": "output", "dependencies": ["b", "c"]},
            ]
        },
    }


@pytest.fixture
def two_workers(fault_stack: Stack) -> Iterator[Stack]:
    fault_stack.start("worker2", command_of="worker")
    yield fault_stack


def assert_all_alive(stack: Stack) -> None:
    dead = [name for name in PROCESSES if not stack.alive(name)]
    assert not dead, f"seed {SEED}: {dead} exited; see {stack.workdir}"


def some_node_running(stack: Stack, execution_ids: list[str]) -> bool:
    assert_all_alive(stack)
    return any(stack.running_nodes(name, execution_ids) for name in WORKERS)


def restart_repeatedly(stack: Stack, rounds: int, restart: Callable[[], None], tag: str) -> list[str]:
    """Each round: submit executions, wait until a node runs, wait a random moment more, restart.
    Returns every execution submitted."""
    rng = random.Random(SEED)
    submitted = []
    for round_index in range(rounds):
        batch = [
            stack.submit(diamond(f"{tag}-{round_index}-{index}"), trigger=True)
            for index in range(EXECUTIONS_PER_ROUND)
        ]
        submitted.extend(batch)
        wait_until(
            lambda batch=batch: some_node_running(stack, batch),
            RUNNING_DEADLINE_S,
            f"a node of round {round_index} running",
        )
        time.sleep(rng.uniform(0, MAX_FAULT_DELAY_S))  # picks the fault's moment; waits for nothing
        restart()
    return submitted


def check_survived(stack: Stack, execution_ids: list[str]) -> None:
    for execution_id in execution_ids:
        state = stack.wait_finished(execution_id, FINISH_DEADLINE_S)
        assert state["status"] == "COMPLETED", (SEED, execution_id, state["error"])
    assert_all_alive(stack)
    invocations = [entry for entry in stack.invocations() if entry.execution_id in set(execution_ids)]
    invoked = {(entry.execution_id, entry.node_id) for entry in invocations}
    assert len(invoked) == 4 * len(execution_ids)  # the ledger saw every node
    unexcused = beyond_at_least_once(invocations)
    repeated = [(entry.execution_id, entry.node_id, entry.attempt) for entry in unexcused]
    assert repeated == [], f"seed {SEED}: nodes invoked again without a worker killed"


def test_workers_and_scheduler_survive_redis_restarted_empty_again_and_again(two_workers: Stack) -> None:
    stack = two_workers
    assert stack.redis is not None

    def restart_redis() -> None:
        assert stack.redis is not None
        stack.redis.stop(signal.SIGKILL)
        stack.redis.start()

    submitted = restart_repeatedly(stack, REDIS_RESTARTS, restart_redis, "redis-restarts")
    check_survived(stack, submitted)


def test_workers_and_scheduler_survive_kafka_restarted_again_and_again(two_workers: Stack) -> None:
    stack = two_workers
    assert stack.kafka is not None
    submitted = restart_repeatedly(stack, KAFKA_RESTARTS, stack.kafka.restart, "kafka-restarts")
    check_survived(stack, submitted)


def test_a_worker_at_the_cap_of_abandoned_handlers_reports_then_shuts_down(fault_stack: Stack) -> None:
    """Its supervisor (bin/run, compose) starts a fresh one; the stack here only sees it exit."""
    stack = fault_stack
    stack.stop("worker")
    stack.start("capped", command_of="worker", extra_env={"WORKFLOW_MAX_ABANDONED_HANDLERS": "1"})
    hung = {
        "name": "hangs-past-its-timeout",
        "dag": {
            "nodes": [
                {
                    "id": "slow",
                    "handler": "llm",
                    "retry": 1,
                    "timeout_seconds": 1,
                    "config": {"prompt": "p", "mock_latency_seconds": 60},  # sleeps through its timeout
                }
            ]
        },
    }
    execution_id = stack.submit(hung, trigger=True)
    state = stack.wait_finished(execution_id, FINISH_DEADLINE_S)
    assert state["status"] == "FAILED" and "timed out after 1" in state["error"]  # reported first
    wait_until(lambda: not stack.alive("capped"), EXIT_DEADLINE_S, "the capped worker to exit")
    log = (stack.workdir / "capped.log").read_text()
    assert "WORKFLOW_MAX_ABANDONED_HANDLERS 1" in log
    assert "Warm shutdown" in log  # not killed: it took no new task and left cleanly
