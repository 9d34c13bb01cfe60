"""The state transitions of an execution as pure decisions: what a report, a failure, a lost
attempt or a node given up means. The scheduler (workflows/scheduler/apply.py) applies them.

No I/O and no statuses here: callers pass what they read from their rows (counters, whether the
execution still runs), and get back which nodes to queue, retry, fail or skip.
"""

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from workflows.core.retry import RetryPolicy

MAX_LOST_ATTEMPTS = 5
NO_RETRY = RetryPolicy()


@dataclass(frozen=True, slots=True)
class Finish:
    """End the execution: completed, or failed with `error`; a failed one skips every node that
    has not started."""

    failed: bool
    error: str = ""


class Completed(NamedTuple):
    """What a node's completion does: the children it made ready, and the end if it was the last.
    A named tuple, not a frozen dataclass: one is made per completed node, at a third of the cost."""

    ready: list[str]
    finish: Finish | None


@dataclass(frozen=True, slots=True)
class Retry:
    """Queue a new attempt of the node after `delay_s`; the failed one counts in its budget."""

    delay_s: float


@dataclass(frozen=True, slots=True)
class Requeue:
    """Queue a new attempt of a node whose attempt was lost; the loss does not use up its budget."""


@dataclass(frozen=True, slots=True)
class GiveUp:
    """The node fails for good with `error` (node_given_up says what that does to the execution)."""

    error: str


def is_current(node_attempt: int, node_active: bool, reported_attempt: int) -> bool:
    """Whether a report or a loss is about the attempt in flight: a duplicate, a stale or an
    out-of-order one was applied already or superseded, and changes nothing."""
    return node_active and node_attempt == reported_attempt


def ready_children(children: Mapping[str, int]) -> list[str]:
    """The children whose last unfinished dependency was the node that just completed.

    `children` holds each PENDING child's count of dependencies not yet COMPLETED, taken after
    the completed node was subtracted; work is proportional to the number of children.
    """
    return [child for child, unfinished in children.items() if unfinished == 0]


def node_completed(
    pending_children: Mapping[str, int], *, running: bool, completed_nodes: int, total_nodes: int
) -> Completed:
    """A node completed (`completed_nodes` counts it): its ready children start, and the execution
    completes with its last node. A cancelled or failed execution starts nothing."""
    if not running:
        return Completed([], None)
    finish = Finish(failed=False) if completed_nodes == total_nodes else None
    return Completed(ready_children(pending_children), finish)


def retry_delay(policy: RetryPolicy | None, failed_attempt: int, rng: random.Random) -> float | None:
    """Seconds to wait before the next attempt, or None when the node has used its attempts."""
    policy = policy or NO_RETRY
    if failed_attempt >= policy.max_attempts:
        return None
    return policy.delay_before(failed_attempt, rng)


def node_failed(
    policy: RetryPolicy | None, error: str, *, counted_attempts: int, running: bool, rng: random.Random
) -> Retry | GiveUp:
    """A node's attempt failed: retry while its policy allows (`counted_attempts` are those its
    budget counts: lost ones and those before a retry-from-failure do not) and the execution runs."""
    delay = retry_delay(policy, counted_attempts, rng)
    if delay is not None and running:
        return Retry(delay)
    return GiveUp(error)


def attempt_lost(attempt: int, reason: str, *, lost_attempts: int, running: bool) -> Requeue | GiveUp:
    """An attempt was lost on evidence (its worker died, it ran past its timeout on a wedged
    worker, its task died with Redis's data): a new attempt, unless the execution has stopped
    or the node was lost MAX_LOST_ATTEMPTS times already."""
    if running and lost_attempts < MAX_LOST_ATTEMPTS:
        return Requeue()
    return GiveUp(f"attempt {attempt} lost: {reason}")


def node_given_up(node_id: str, error: str, *, running: bool) -> Finish | None:
    """A node failed for good: so does the execution, if it was still running."""
    return Finish(failed=True, error=f"node '{node_id}' failed: {error}") if running else None
