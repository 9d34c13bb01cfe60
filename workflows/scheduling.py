"""Pure scheduling decisions: which nodes start, which become ready, whether to retry.

No I/O here: the scheduler applies these decisions to the database.
"""

import random
from collections.abc import Iterable, Mapping

from workflows.dag import WorkflowSpec
from workflows.retry import RetryPolicy

NO_RETRY = RetryPolicy()


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
