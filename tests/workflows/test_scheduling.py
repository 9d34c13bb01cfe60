"""The pure scheduling decisions: readiness by counters, and the retry decision."""

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from workflows.dag import WorkflowSpec, parse_workflow
from workflows.retry import RetryPolicy
from workflows.scheduling import bundles, ready_children, retry_delay, root_nodes, task_spread

HANDLERS = {"input": "input", "llm": "llm", "output": "output"}


@st.composite
def random_dags(draw: st.DrawFn) -> WorkflowSpec:
    """Random DAGs: edges only go from a lower to a higher index, then the nodes are shuffled."""
    size = draw(st.integers(min_value=1, max_value=30))
    nodes = []
    for index in range(size):
        parents = draw(st.sets(st.integers(min_value=0, max_value=index - 1), max_size=4)) if index else set()
        nodes.append(
            {"id": f"n{index}", "handler": "llm", "dependencies": [f"n{p}" for p in sorted(parents)]}
        )
    order = draw(st.permutations(nodes))
    return parse_workflow({"name": "random", "dag": {"nodes": list(order)}}, handlers=HANDLERS)


def simulate(spec: WorkflowSpec, rng: random.Random) -> list[str]:
    """Run the spec as the scheduler does: counters of unfinished dependencies, nodes finishing
    in a random order among those running; return the order in which nodes were dispatched."""
    unfinished = {node.id: len(node.dependencies) for node in spec.nodes}
    running = list(root_nodes(spec))
    dispatched = list(running)
    while running:
        finished = running.pop(rng.randrange(len(running)))
        children = spec.children[finished]
        for child in children:
            unfinished[child] -= 1
        ready = ready_children(children, unfinished)
        running.extend(ready)
        dispatched.extend(ready)
    return dispatched


@settings(max_examples=200, deadline=None)
@given(spec=random_dags(), seed=st.integers())
def test_every_node_runs_once_after_all_its_dependencies(spec: WorkflowSpec, seed: int) -> None:
    dispatched = simulate(spec, random.Random(seed))
    assert sorted(dispatched) == sorted(node.id for node in spec.nodes)
    position = {node_id: index for index, node_id in enumerate(dispatched)}
    for node in spec.nodes:
        for dependency in node.dependencies:
            assert position[dependency] < position[node.id], f"{node.id} dispatched before {dependency}"


def test_fan_in_node_is_ready_only_after_its_last_parent() -> None:
    spec = parse_workflow(
        {
            "name": "diamond",
            "dag": {
                "nodes": [
                    {"id": "A", "handler": "input"},
                    {"id": "B", "handler": "llm", "dependencies": ["A"]},
                    {"id": "C", "handler": "llm", "dependencies": ["A"]},
                    {"id": "D", "handler": "output", "dependencies": ["B", "C"]},
                ]
            },
        },
        handlers=HANDLERS,
    )
    assert root_nodes(spec) == ["A"]
    assert ready_children(spec.children["B"], {"D": 1}) == []
    assert ready_children(spec.children["C"], {"D": 0}) == ["D"]


def test_retry_delay_until_attempts_are_used_up() -> None:
    policy = RetryPolicy(max_attempts=3, backoff_seconds=1.0, backoff_multiplier=2.0, jitter=False)
    rng = random.Random(1)
    assert retry_delay(policy, 1, rng) == 1.0
    assert retry_delay(policy, 2, rng) == 2.0
    assert retry_delay(policy, 3, rng) is None
    assert retry_delay(None, 1, rng) is None


@given(
    count=st.integers(min_value=0, max_value=3000),
    min_tasks=st.integers(min_value=1, max_value=64),
    max_per_task=st.integers(min_value=1, max_value=64),
)
def test_bundles_keep_every_node_in_order_within_both_limits(
    count: int, min_tasks: int, max_per_task: int
) -> None:
    ready = list(range(count))
    split = bundles(ready, min_tasks, max_per_task)
    assert [node for bundle in split for node in bundle] == ready
    assert all(1 <= len(bundle) <= max_per_task for bundle in split)
    assert len(split) >= min(count, min_tasks)
    if split:
        assert max(map(len, split)) - min(map(len, split)) <= 1


def test_few_ready_nodes_get_a_task_each_and_many_share_tasks() -> None:
    assert bundles(["a", "b", "c"], min_tasks=8, max_per_task=32) == [["a"], ["b"], ["c"]]
    assert [len(bundle) for bundle in bundles(list(range(10)), 8, 32)] == [2, 2, 1, 1, 1, 1, 1, 1]
    assert [len(bundle) for bundle in bundles(list(range(80)), 8, 32)] == [10] * 8
    assert [len(bundle) for bundle in bundles(list(range(2000)), 8, 32)] == [32] * 47 + [31] * 16
    assert bundles(list(range(5)), 8, 1) == [[0], [1], [2], [3], [4]]


def test_nodes_spread_over_tasks_while_no_task_waits_and_share_them_once_tasks_wait() -> None:
    assert task_spread(waiting_tasks=0, min_tasks=8) == 8
    assert [len(bundle) for bundle in bundles(list(range(6)), task_spread(0, 8), 32)] == [1] * 6
    assert task_spread(waiting_tasks=3, min_tasks=8) == 1
    assert [len(bundle) for bundle in bundles(list(range(6)), task_spread(3, 8), 32)] == [6]
    assert [len(bundle) for bundle in bundles(list(range(40)), task_spread(3, 8), 32)] == [20, 20]
