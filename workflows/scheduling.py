"""Pure scheduling decisions: which nodes start, which become ready, whether to retry.

No I/O here: the scheduler applies these decisions to the database.
"""

import random
from collections.abc import Iterable, Mapping, Sequence
from typing import TypeVar

from workflows.dag import WorkflowSpec
from workflows.retry import RetryPolicy

NO_RETRY = RetryPolicy()
T = TypeVar("T")


def root_nodes(spec: WorkflowSpec) -> list[str]:
    """Nodes with no dependencies: the ones a new execution starts with."""
    return [node.id for node in spec.nodes if not node.dependencies]


def ready_children(children: Iterable[str], unfinished_deps: Mapping[str, int]) -> list[str]:
    """The children whose last unfinished dependency was the node that just completed.

    `unfinished_deps` holds each child's count of dependencies not yet COMPLETED, taken after
    the completed node was subtracted; work is proportional to the number of children.
    """
    return [child for child in children if unfinished_deps.get(child) == 0]


def retry_delay(policy: RetryPolicy | None, failed_attempt: int, rng: random.Random) -> float | None:
    """Seconds to wait before the next attempt, or None when the node has used its attempts."""
    policy = policy or NO_RETRY
    if failed_attempt >= policy.max_attempts:
        return None
    return policy.delay_before(failed_attempt, rng)


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
