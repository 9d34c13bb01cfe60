"""The Reliability issue's "Faults survived", each proved with real processes on a private stack.

The stack (`fault_stack`) has a Redis and a Kafka of its own, so these tests kill and restart them
without touching the shared ones. Every test drives executions through a fault and then checks
that each finished as designed, that every node was COMPLETED exactly once as the scheduler saw it
(one `node_completed` per node in GET /workflows/{id}/events), and that the outputs are right.
"""

import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import datetime
from typing import Any

import pytest
import redis
import requests
from confluent_kafka import ConsumerGroupState, KafkaException
from confluent_kafka.admin import AdminClient

from devtools.devstack import ROOT, Stack, wait_until
from devtools.soak import completions, expected_outputs
from tests.integration.kafka_topics import (
    KAFKA_TIMEOUT_S,
    PARTITIONS,
    kafka_config,
    publish,
    read_topic,
    topic,
    wait_consumed,
)
from workflows.messages import TASK_COMPLETE, WORKFLOW_START, TaskComplete, encode
from workflows.models import ACTOR_FIELDS

TERMINAL = {"COMPLETED", "FAILED", "CANCELLED"}
POLL_S = 0.5
# Shorter than a scheduler failover after SIGKILL (the dead consumer keeps its partitions until its
# session times out, 10 s): the reconciler must not count attempts whose reports wait in Kafka
# meanwhile as lost (a lease from dispatch would have expired), since it only looks at partitions
# its scheduler owns and has read to the end.
FAILOVER_SAFE_TIMEOUT_S = 4
# A lost attempt is found on evidence (a dead worker's silent heartbeat, Redis's new epoch), not by
# waiting out its timeout (the default, 300 s): the node runs again within seconds, <= 15 s on a
# quiet machine; the bound is generous for a shared one.
RECOVERY_BOUND_S = 60.0
# A report applied this long after its node finished waited in Kafka for a scheduler.
REPORT_WAITED_S = 3
FAILOVER_DEADLINE_S = 150.0
SOAK_DEADLINE_S = 300


# ------------------------------------------------------------------ workflows and checks


def pipeline(
    name: str, *, steps: int, latency_s: float, timeout_s: float | None = None, width: int = 1
) -> dict[str, Any]:
    """An input node, `steps` layers of `width` mocked LLM calls quoting it, and an output node;
    without `timeout_s` the nodes have the default timeout (300 s)."""
    nodes: list[dict[str, Any]] = [{"id": "source", "handler": "input", "config": {"topic": name}}]
    previous = ["source"]
    for step in range(1, steps + 1):
        layer = [f"step{step}_{branch}" for branch in range(width)]
        nodes.extend(
            {
                "id": node_id,
                "handler": "llm",
                "dependencies": previous,
                **({"timeout_seconds": timeout_s} if timeout_s is not None else {}),
                "config": {
                    "prompt": f"{node_id} on {{{{ source.topic }}}}",
                    "mock_latency_seconds": latency_s,
                },
            }
            for node_id in layer
        )
        previous = layer
    nodes.append({"id": "sink", "handler": "output", "dependencies": previous})
    return {"name": name, "dag": {"nodes": nodes}}


def node_ids(workflow: dict[str, Any]) -> list[str]:
    return [node["id"] for node in workflow["dag"]["nodes"]]


def results(stack: Stack, execution_id: str) -> dict[str, Any]:
    response = requests.get(stack.url(f"/workflows/{execution_id}/results"), timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["results"]


def assert_ran_once(stack: Stack, execution_id: str, workflow: dict[str, Any]) -> list[dict[str, Any]]:
    """COMPLETED, every node completed exactly once in the history, outputs as designed."""
    state = stack.status(execution_id)
    assert state["status"] == "COMPLETED", state
    assert state["node_states"] == dict.fromkeys(node_ids(workflow), "COMPLETED"), state
    events = stack.events(execution_id)
    assert completions(events) == Counter(node_ids(workflow)), (
        f"node_completed per node: {completions(events)}"
    )
    assert results(stack, execution_id) == expected_outputs(workflow)
    return events


def submit_all(stack: Stack, workflows: list[dict[str, Any]]) -> list[str]:
    return [stack.submit(workflow, trigger=True) for workflow in workflows]


def wait_all_finished(stack: Stack, execution_ids: list[str], deadline_s: float) -> None:
    def finished() -> bool:
        return all(stack.status(execution_id)["status"] in TERMINAL for execution_id in execution_ids)

    wait_until(finished, deadline_s, f"{len(execution_ids)} executions to finish", POLL_S)


def wait_in_flight(stack: Stack, execution_ids: list[str], at_least: int) -> list[str]:
    """Wait until `at_least` executions are part-way through; return those."""

    def part_way() -> list[str] | None:
        found = []
        for execution_id in execution_ids:
            progress = stack.status(execution_id)["progress"]
            if 0 < progress["completed"] < progress["total"]:
                found.append(execution_id)
        return found if len(found) >= at_least else None

    return wait_until(part_way, 60, f"{at_least} executions to be part-way through", 0.1)


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def completed_at(events: list[dict[str, Any]]) -> dict[str, datetime]:
    return {event["node_id"]: moment(event["at"]) for event in events if event["kind"] == "node_completed"}


def group_members(stack: Stack) -> dict[str, set[tuple[str, int]]] | None:
    """The scheduler group's members and their topic-partitions, once the group is stable."""
    group = stack.env["SCHEDULER_GROUP_ID"]
    admin = AdminClient(kafka_config(stack))
    try:
        description = admin.describe_consumer_groups([group], request_timeout=KAFKA_TIMEOUT_S)[group].result()
    except KafkaException:  # e.g. NOT_COORDINATOR while the broker loads the group
        return None
    if description.state != ConsumerGroupState.STABLE:
        return None
    return {
        member.member_id: {(tp.topic, tp.partition) for tp in member.assignment.topic_partitions}
        for member in description.members
    }


def wait_group(stack: Stack, size: int) -> dict[str, set[tuple[str, int]]]:
    """Wait until `size` schedulers hold every partition of both topics between them, disjointly."""
    every = {(topic(stack, name), p) for name in (WORKFLOW_START, TASK_COMPLETE) for p in range(PARTITIONS)}

    def settled() -> dict[str, set[tuple[str, int]]] | None:
        members = group_members(stack)
        if members is None or len(members) != size or not all(members.values()):
            return None
        held = [tp for assigned in members.values() for tp in assigned]
        return members if set(held) == every and len(held) == len(every) else None

    return wait_until(settled, FAILOVER_DEADLINE_S, f"a stable scheduler group of {size}", POLL_S)


# ------------------------------------------------------------------ the faults


def test_worker_killed_mid_task_its_node_runs_again_on_the_other_worker(fault_stack: Stack) -> None:
    stack = fault_stack
    stack.start("worker2", command_of="worker")
    workflow = pipeline("worker-kill", steps=1, latency_s=3)
    execution_id = stack.submit(workflow, trigger=True)

    def running_slow_node() -> list[str]:
        return [
            name
            for name in ("worker", "worker2")
            if ("step1_0" in dict(stack.running_nodes(name, [execution_id])).values())
        ]

    victim = wait_until(running_slow_node, 30, "the slow node to start on a worker")[0]
    node_id = "step1_0"
    survivor = "worker2" if victim == "worker" else "worker"
    stack.stop(victim, signal.SIGKILL)
    wait_recovered(stack, execution_id, [node_id])

    state = stack.wait_finished(execution_id, 60)
    assert state["status"] == "COMPLETED", state
    detail = state["nodes"][node_id]
    assert detail["attempt"] > 1
    assert detail["worker"] == stack.worker_hostname(survivor) != stack.worker_hostname(victim)
    events = assert_ran_once(stack, execution_id, workflow)
    lost = [event for event in events if event["kind"] == "node_lost"]
    assert [(event["node_id"], event["detail"]["attempt"]) for event in lost] == [(node_id, 1)]
    assert "stopped sending heartbeats" in lost[0]["detail"]["reason"], lost


def wait_recovered(stack: Stack, execution_id: str, killed_nodes: list[str]) -> None:
    """Wait until every node that was running on a killed worker has a new attempt; print how long
    it took (a lease from dispatch made it the node's timeout, 300 s, plus 5 s)."""
    killed_at = time.monotonic()

    def redispatched() -> bool:
        nodes = stack.status(execution_id)["nodes"]
        return all(nodes[node_id]["attempt"] > 1 for node_id in killed_nodes)

    wait_until(redispatched, RECOVERY_BOUND_S, f"{killed_nodes} to run again", 0.2)
    print(f"recovery after the worker kill: {time.monotonic() - killed_at:.1f}s")


def test_worker_killed_mid_task_of_several_nodes_each_runs_again_once(fault_stack: Stack) -> None:
    """24 nodes readied together travel as 8 tasks of 3 (WORKFLOW_MIN_TASKS_PER_BATCH=8, the
    private stack's queue being empty); the worker running some of them dies: each of its nodes
    gets a new attempt of its own."""
    stack = fault_stack
    stack.start("worker2", command_of="worker")
    workflow = pipeline("worker-kill-shared", steps=1, latency_s=3, width=24)
    execution_id = stack.submit(workflow, trigger=True)

    def busiest_worker() -> list[tuple[str, list[str]]]:
        running = {
            name: [node for _, node in stack.running_nodes(name, [execution_id])]
            for name in ("worker", "worker2")
        }
        return [(name, nodes) for name, nodes in running.items() if len(nodes) >= 3]

    victim, killed_nodes = wait_until(busiest_worker, 30, "a task of 3 nodes to start on a worker")[0]
    survivor = "worker2" if victim == "worker" else "worker"
    stack.stop(victim, signal.SIGKILL)
    wait_recovered(stack, execution_id, killed_nodes)

    state = stack.wait_finished(execution_id, 60)
    events = assert_ran_once(stack, execution_id, workflow)
    lost = Counter(
        (event["node_id"], event["detail"]["attempt"]) for event in events if event["kind"] == "node_lost"
    )
    assert set(killed_nodes) <= {node_id for node_id, _ in lost}  # and those it started meanwhile
    assert set(lost.values()) == {1} and {attempt for _, attempt in lost} == {1}
    for node_id, detail in state["nodes"].items():
        if (node_id, 1) in lost:
            assert (detail["attempt"], detail["worker"]) == (2, stack.worker_hostname(survivor))
        else:
            assert detail["attempt"] == 1


def test_scheduler_killed_mid_run_and_restarted_resumes_from_offsets_and_database(fault_stack: Stack) -> None:
    stack = fault_stack
    workflows = [
        pipeline(f"scheduler-kill-{index}", steps=3, latency_s=0.4, timeout_s=FAILOVER_SAFE_TIMEOUT_S)
        for index in range(16)
    ]
    execution_ids = submit_all(stack, workflows)
    wait_in_flight(stack, execution_ids, at_least=6)
    stack.stop("scheduler", signal.SIGKILL)
    stack.start("scheduler")

    wait_all_finished(stack, execution_ids, FAILOVER_DEADLINE_S)
    waited_in_kafka = []
    for execution_id, workflow in zip(execution_ids, workflows, strict=True):
        events = assert_ran_once(stack, execution_id, workflow)
        nodes = stack.status(execution_id)["nodes"]
        for node_id, applied in completed_at(events).items():
            if (applied - moment(nodes[node_id]["finished_at"])).total_seconds() > REPORT_WAITED_S:
                waited_in_kafka.append((execution_id, node_id, nodes[node_id]["attempt"]))
    # Reports sent while no scheduler ran waited in Kafka and were applied after the restart,
    # from the committed offsets on: these nodes did not run again.
    assert waited_in_kafka, "no completion report was sent while the scheduler was down"
    assert {attempt for _, _, attempt in waited_in_kafka} == {1}
    wait_consumed(
        stack, TASK_COMPLETE, {record.partition: record.offset for record in read_topic(stack, TASK_COMPLETE)}
    )


def test_two_schedulers_split_the_partitions_and_a_killed_ones_executions_finish_on_the_other(
    fault_stack: Stack,
) -> None:
    stack = fault_stack
    first = wait_group(stack, 1)
    busy = [pipeline(f"scale-out-{index}", steps=4, latency_s=0.5, timeout_s=10) for index in range(24)]
    busy_ids = submit_all(stack, busy)
    stack.start("scheduler2", command_of="scheduler")
    members = wait_group(stack, 2)
    owner = {next(iter(first)): "scheduler"}
    owner.update({member: "scheduler2" for member in members if member not in owner})
    assert sorted(owner.values()) == ["scheduler", "scheduler2"], (first, members)
    assert stack.alive("scheduler"), "the busy scheduler died while the group rebalanced"
    wait_all_finished(stack, busy_ids, 60)
    for execution_id, workflow in zip(busy_ids, busy, strict=True):
        assert_ran_once(stack, execution_id, workflow)

    workflows = [
        pipeline(f"two-schedulers-{index}", steps=3, latency_s=0.5, timeout_s=FAILOVER_SAFE_TIMEOUT_S)
        for index in range(12)
    ]
    execution_ids = submit_all(stack, workflows)
    in_flight = wait_in_flight(stack, execution_ids, at_least=6)
    partition_of = {record.key: record.partition for record in read_topic(stack, TASK_COMPLETE)}
    completing = topic(stack, TASK_COMPLETE)
    handled_by = {
        name: [e for e in in_flight if (completing, partition_of.get(e)) in members[member]]
        for member, name in owner.items()
    }
    victim = max(handled_by, key=lambda name: len(handled_by[name]))
    survivor = "scheduler2" if victim == "scheduler" else "scheduler"
    assert handled_by[victim], handled_by
    killed_at = datetime.now().astimezone()
    stack.stop(victim, signal.SIGKILL)

    wait_all_finished(stack, execution_ids, FAILOVER_DEADLINE_S)
    for execution_id, workflow in zip(execution_ids, workflows, strict=True):
        events = assert_ran_once(stack, execution_id, workflow)
        if execution_id in handled_by[victim]:
            assert max(completed_at(events).values()) > killed_at, "finished before the kill"
    assert stack.alive(survivor)
    (remaining,) = wait_group(stack, 1)
    assert owner[remaining] == survivor


def test_redis_restarted_empty_mid_run_reconciler_redispatches_and_mirror_is_rebuilt(
    fault_stack: Stack,
) -> None:
    stack = fault_stack
    assert stack.redis is not None
    client = redis.Redis.from_url(stack.redis.url)
    run_id = client.info("server")["run_id"]
    workflows = [pipeline(f"redis-restart-{index}", steps=2, width=4, latency_s=0.5) for index in range(16)]
    execution_ids = submit_all(stack, workflows)
    wait_until(lambda: client.llen(stack.env["CELERY_QUEUE"]) >= 5, 30, "tasks to queue up in Redis", 0.05)
    running = {
        (execution_id, node_id): detail["attempt"]
        for execution_id in execution_ids
        for node_id, detail in stack.status(execution_id)["nodes"].items()
        if detail["status"] == "RUNNING"
    }

    stack.redis.stop(signal.SIGKILL)
    down = stack.health()
    assert down.status_code == 503 and down.json()["down"] == ["redis"], down.text
    during = stack.status(execution_ids[0])
    assert len(during["nodes"]) == len(node_ids(workflows[0])), "the status without Redis lacks nodes"
    stack.redis.start()
    restarted_at = time.monotonic()
    assert client.info("server")["run_id"] != run_id, "not a fresh Redis"

    wait_all_finished(stack, execution_ids, RECOVERY_BOUND_S)
    print(f"every execution finished {time.monotonic() - restarted_at:.1f}s after Redis restarted empty")
    assert stack.alive("worker")
    lost = 0
    for execution_id, workflow in zip(execution_ids, workflows, strict=True):
        events = assert_ran_once(stack, execution_id, workflow)
        lost += sum(event["kind"] == "node_lost" for event in events)
        attempts = {e["node_id"]: e["detail"]["attempt"] for e in events if e["kind"] == "node_completed"}
        state = stack.status(execution_id)
        assert {node_id: detail["attempt"] for node_id, detail in state["nodes"].items()} == attempts
        for node_id, attempt in attempts.items():  # what ran on the live worker did not run again
            assert running.get((execution_id, node_id), attempt) == attempt, (execution_id, node_id)
        mirrored = client.hgetall(f"wf:exec:{execution_id}")
        assert {field.decode() for field in mirrored} == {
            "execution",
            *(f"n:{n}" for n in node_ids(workflow)),
            *(f"by:{field}" for field in ACTOR_FIELDS),
        }
    assert lost > 0, "no queued task was lost with Redis, so the reconciler was not needed"


def test_kafka_restart_mid_run_health_503_naming_kafka_then_200_and_trigger_while_down_not_lost(
    fault_stack: Stack,
) -> None:
    """Also the Platform issue's health test: /health is 503 naming `kafka` while it is down."""
    stack = fault_stack
    assert stack.kafka is not None
    workflows = [
        pipeline(f"kafka-restart-{index}", steps=2, latency_s=0.5, timeout_s=5) for index in range(8)
    ]
    execution_ids = submit_all(stack, workflows)
    wait_in_flight(stack, execution_ids, at_least=3)
    stack.kafka.stop()

    late = pipeline("kafka-down-trigger", steps=2, latency_s=0.1, timeout_s=5)
    late_id = stack.submit(late)
    asked = time.monotonic()
    triggered = requests.post(stack.url(f"/workflows/{late_id}/trigger"), timeout=30)
    assert triggered.status_code == 200, triggered.text
    assert time.monotonic() - asked < 2.0, "a trigger waited for Kafka"
    health = stack.health()
    assert health.status_code == 503, health.text
    assert health.json()["down"] == ["kafka"]

    restarted_at = datetime.now().astimezone()
    stack.kafka.start()
    wait_until(lambda: stack.health().status_code == 200, 60, "/health to be 200 again", POLL_S)
    wait_all_finished(stack, [*execution_ids, late_id], 120)
    for execution_id, workflow in zip([*execution_ids, late_id], [*workflows, late], strict=True):
        assert_ran_once(stack, execution_id, workflow)
    started = next(moment(event["at"]) for event in stack.events(late_id) if event["kind"] == "started")
    assert started > restarted_at, "the execution triggered while Kafka was down started before it was back"


def test_duplicate_stale_out_of_order_and_unknown_task_complete_events_change_nothing(
    fault_stack: Stack,
) -> None:
    stack = fault_stack
    workflow = {
        "name": "idempotent-completions",
        "dag": {
            "nodes": [
                {"id": "source", "handler": "input", "config": {"topic": "dedup"}},
                {
                    "id": "flaky",
                    "handler": "llm",
                    "dependencies": ["source"],
                    "timeout_seconds": 10,
                    "retry": {"max_attempts": 3, "backoff_seconds": 0.2, "jitter": False},
                    "config": {
                        "prompt": "on {{ source.topic }}",
                        "mock_latency_seconds": 3,
                        "fail_attempts": 1,
                    },
                },
                {"id": "sink", "handler": "output", "dependencies": ["flaky"]},
            ]
        },
    }
    execution_id = stack.submit(workflow, trigger=True)

    def second_attempt_running() -> bool:
        flaky = stack.status(execution_id)["nodes"]["flaky"]
        return flaky["attempt"] == 2 and flaky["status"] == "RUNNING"

    wait_until(second_attempt_running, 30, "the second attempt of the flaky node to run", 0.1)
    forged = [
        TaskComplete(execution_id, "flaky", 1, "COMPLETED", output={"forged": "stale attempt"}),
        TaskComplete(execution_id, "sink", 1, "COMPLETED", output={"forged": "before its dispatch"}),
    ]
    wait_consumed(
        stack, TASK_COMPLETE, publish(stack, TASK_COMPLETE, [(execution_id, encode(r)) for r in forged])
    )
    state = stack.status(execution_id)
    assert (state["node_states"]["flaky"], state["nodes"]["flaky"]["attempt"]) == ("RUNNING", 2)
    assert state["node_states"]["sink"] == "PENDING"
    assert not completions(stack.events(execution_id))["flaky"]

    assert stack.wait_finished(execution_id)["status"] == "COMPLETED"
    assert_ran_once(stack, execution_id, workflow)
    before = (stack.status(execution_id), stack.events(execution_id), results(stack, execution_id))

    reports = [record for record in read_topic(stack, TASK_COMPLETE) if record.key == execution_id]
    assert len(reports) >= len(forged) + 4, reports  # source, flaky twice, sink
    stranger = str(uuid.uuid4())
    replays = [
        *((execution_id, record.value) for record in reports),
        *((execution_id, record.value) for record in reversed(reports)),
        (execution_id, encode(TaskComplete(execution_id, "sink", 1, "FAILED", error="forged failure"))),
        (
            execution_id,
            encode(TaskComplete(execution_id, "sink", 2, "COMPLETED", output={"forged": "future"})),
        ),
        (execution_id, encode(TaskComplete(execution_id, "nowhere", 1, "COMPLETED", output={}))),
        (execution_id, b"{not json"),
        (stranger, encode(TaskComplete(stranger, "source", 1, "COMPLETED", output={"forged": "unknown"}))),
    ]
    wait_consumed(stack, TASK_COMPLETE, publish(stack, TASK_COMPLETE, replays))
    assert (stack.status(execution_id), stack.events(execution_id), results(stack, execution_id)) == before
    assert requests.get(stack.url(f"/workflows/{stranger}"), timeout=30).status_code == 404
    assert stack.alive("scheduler")


@pytest.mark.timeout(SOAK_DEADLINE_S + 60)
def test_soak_quick_mode_loses_and_duplicates_nothing() -> None:
    finished = subprocess.run(
        [sys.executable, "manage.py", "soak", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=SOAK_DEADLINE_S,
    )
    report = finished.stdout + finished.stderr[-3000:]
    assert finished.returncode == 0, report
    assert re.search(r"^lost\s+0$", finished.stdout, re.MULTILINE), report
    assert re.search(r"^duplicated node effects\s+0$", finished.stdout, re.MULTILINE), report
    assert re.search(r"^faults injected: \S+ x1$", finished.stdout, re.MULTILINE), report
    assert "verdict: PASS" in finished.stdout
