"""The pure packing of ready nodes into Celery tasks: the spread and the split."""

from hypothesis import given
from hypothesis import strategies as st

from workflows.core.packing import bundles, task_spread


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
