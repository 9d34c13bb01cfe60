"""Poison stays in its execution: a workflow whose data grows past a limit at run time fails
with an error naming the limit, and the workflows after it still run (real stack)."""

import time
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

from devtools.devstack import Stack
from workflows.messages import TASK_DISPATCH

# A 200,000-character prompt: the mock LLM's output holds it twice (about 400 KB), under the
# 512 KiB output limit, and the config that carries it is under the 256 KiB config limit.
PROMPT = "x" * 200_000
# What the stack's task.dispatch topic accepts in the refusal test: far below the limits.
SMALL_TOPIC_MESSAGE_BYTES = 50_000
PROMPT_DEADLINE_S = 60.0


def node(node_id: str, handler: str, deps: list[str] | None = None, **config: Any) -> dict[str, Any]:
    return {"id": node_id, "handler": handler, "dependencies": deps or [], "config": config}


def workflow(name: str, *nodes: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "dag": {"nodes": list(nodes)}}


def assert_failed_naming(stack: Stack, execution_id: str, node_id: str, words: str) -> dict[str, Any]:
    state = stack.wait_finished(execution_id, deadline_s=PROMPT_DEADLINE_S)
    assert state["status"] == "FAILED", state["error"]
    assert state["node_states"][node_id] == "FAILED", state["node_states"]
    assert words in state["nodes"][node_id]["error"], state["nodes"][node_id]["error"]
    assert f"node '{node_id}' failed" in state["error"]
    return state


def assert_a_normal_workflow_completes(stack: Stack) -> None:
    """A small workflow triggered now completes: the scheduler is not stuck on the poison."""
    started = time.monotonic()
    execution_id = stack.submit(
        workflow("after", node("A", "input", topic="cats"), node("B", "llm", ["A"], prompt="{{ A.topic }}")),
        trigger=True,
    )
    state = stack.wait_finished(execution_id, deadline_s=PROMPT_DEADLINE_S)
    assert state["status"] == "COMPLETED", state
    assert time.monotonic() - started < PROMPT_DEADLINE_S


def test_a_template_amplifying_a_large_output_fails_its_node_naming_the_limit(stack: Stack) -> None:
    """Five copies of a 400 KB output make a 2 MB config: on main it was dispatched, Kafka
    refused its announcement, and the scheduler retried it forever, stopping every workflow."""
    amplified = " ".join(["{{ big.response }}"] * 5)
    execution_id = stack.submit(
        workflow(
            "amplified",
            node("big", "llm", prompt=PROMPT),
            node("echo", "llm", ["big"], prompt=amplified),
            node("after", "output", ["echo"]),
        ),
        trigger=True,
    )

    state = assert_failed_naming(
        stack, execution_id, "echo", "over the limit of 524,288 bytes (WORKFLOW_MAX_RESOLVED_CONFIG_BYTES)"
    )
    assert state["node_states"] == {"big": "COMPLETED", "echo": "FAILED", "after": "SKIPPED"}
    assert_a_normal_workflow_completes(stack)


def test_a_handler_output_over_the_limit_fails_its_node_naming_the_limit(stack: Stack) -> None:
    """The output node gathers two 400 KB outputs: 800 KB, under Kafka's 1 MB, so main
    recorded it; the worker now refuses it before reporting."""
    execution_id = stack.submit(
        workflow(
            "large output",
            node("left", "llm", prompt=PROMPT),
            node("right", "llm", prompt=PROMPT),
            node("gather", "output", ["left", "right"]),
        ),
        trigger=True,
    )

    state = assert_failed_naming(stack, execution_id, "gather", "output is 800,")
    assert "over the limit of 524,288 bytes (WORKFLOW_MAX_OUTPUT_BYTES)" in state["nodes"]["gather"]["error"]
    assert stack.events(execution_id)[-1]["kind"] == "failed"
    assert_a_normal_workflow_completes(stack)


@pytest.fixture
def small_dispatch_topic(stack: Stack) -> Iterator[None]:
    """The stack's task.dispatch topic accepts only small messages, as a broker configured
    below the engine's limits would: Kafka refuses larger announcements for good."""
    admin = AdminClient({"bootstrap.servers": stack.env.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")})
    topic = f"{stack.env['KAFKA_TOPIC_PREFIX']}{TASK_DISPATCH}"

    def set_limit(value: str | None) -> None:
        operation = AlterConfigOpType.SET if value is not None else AlterConfigOpType.DELETE
        entry = ConfigEntry("max.message.bytes", value or "", incremental_operation=operation)
        resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[entry])
        for future in admin.incremental_alter_configs([resource]).values():
            future.result(30)

    set_limit(str(SMALL_TOPIC_MESSAGE_BYTES))
    yield
    set_limit(None)


@pytest.mark.usefixtures("small_dispatch_topic")
def test_a_message_kafka_refuses_for_good_fails_its_execution_and_the_next_completes(stack: Stack) -> None:
    """On main the scheduler retried the refused announcement forever (MSG_SIZE_TOO_LARGE), and
    no other workflow made progress."""
    execution_id = stack.submit(
        workflow("refused", node("A", "input"), node("big", "llm", ["A"], prompt="y" * 100_000)), trigger=True
    )

    assert_failed_naming(stack, execution_id, "big", "Kafka refused the node's task.dispatch announcement")
    assert_a_normal_workflow_completes(stack)
