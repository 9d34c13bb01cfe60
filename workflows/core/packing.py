"""How the nodes a batch readied share Celery tasks (pure): the spread and the split."""

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def task_spread(waiting_tasks: int, min_tasks: int) -> int:
    """Over how many Celery tasks at least to spread the nodes a batch readied.

    While no task waits in the queue some workers may be idle, so the nodes are spread over
    `min_tasks` tasks to reach them. Once tasks wait, every worker is busy and a node in a task of
    its own only waits longer: the nodes share as few tasks as `bundles` allows. Without this a
    large DAG could settle into batches of a few reports each, each readying a few nodes, each
    in a task of its own, with a worker too slow at one task per node to clear the queue.
    """
    return min_tasks if waiting_tasks == 0 else 1


def bundles(ready: Sequence[T], min_tasks: int, max_per_task: int) -> list[Sequence[T]]:
    """Split the nodes a batch readied into Celery tasks, in order.

    A Celery task costs a worker about 1 ms of CPU whatever it runs, more than running a short
    node; so when a batch readies more nodes than `min_tasks`, they share tasks. They are spread
    over at least `min_tasks` tasks (that many workers share them) and at most `max_per_task` go in
    one; sizes differ by one at most. With no more than `min_tasks` nodes, each has its own task.
    """
    if not ready:
        return []
    count = max(min(len(ready), min_tasks), -(-len(ready) // max_per_task))
    size, extra = divmod(len(ready), count)
    split, start = [], 0
    for index in range(count):
        end = start + size + (index < extra)
        split.append(ready[start:end])
        start = end
    return split
