"""The scheduler's interpreter of the core's decisions, on real rows: what each decision writes."""

import random
from typing import Any

import pytest
from django.db import transaction

from workflows import services
from workflows.messages import TaskComplete
from workflows.models import Execution, ExecutionStatus, NodeRun, NodeStatus
from workflows.scheduler import apply
from workflows.scheduler.batch import Batch
from workflows.scheduler.reconciler import Loss

DIAMOND = {
    "name": "diamond",
    "dag": {
        "nodes": [
            {"id": "A", "handler": "llm"},
            {
                "id": "B",
                "handler": "llm",
                "dependencies": ["A"],
                "retry": {"max_attempts": 2, "jitter": False},
            },
            {"id": "C", "handler": "llm", "dependencies": ["A"]},
            {"id": "D", "handler": "llm", "dependencies": ["B", "C"]},
        ]
    },
}


def in_batch(work: Any) -> Batch:
    """Run `work(batch)` and write the batch, as the scheduler does, in one transaction."""
    batch = Batch()
    with transaction.atomic():
        work(batch)
        batch.save()
    return batch


def report(
    execution: Execution, node_id: str, attempt: int, status: str = NodeStatus.COMPLETED
) -> TaskComplete:
    return TaskComplete(str(execution.pk), node_id, attempt, status, output={"n": node_id}, error="boom")


def statuses(execution: Execution) -> dict[str, str]:
    return dict(NodeRun.objects.filter(execution=execution).values_list("node_id", "status"))


def queued_in(batch: Batch) -> list[tuple[str, int, float]]:
    return [(item.node.node_id, item.node.attempt, item.countdown_s) for item in batch.queued]


@pytest.fixture
def diamond() -> Execution:
    execution = services.workflow_submit(data=DIAMOND, trigger=True)
    in_batch(lambda batch: apply.start(str(execution.pk), batch))
    return execution


def complete(execution: Execution, *reports: TaskComplete) -> Batch:
    """Apply reports as the scheduler's batch does: its executions locked first."""
    rng = random.Random(0)

    def work(batch: Batch) -> None:
        batch.lock_executions([str(execution.pk)])
        for one in reports:
            apply.complete(one, batch, rng)

    return in_batch(work)


@pytest.mark.django_db
def test_completions_queue_the_children_they_make_ready_and_the_last_completes_the_execution(
    diamond: Execution,
) -> None:
    assert queued_in(complete(diamond, report(diamond, "A", 1))) == [("B", 1, 0.0), ("C", 1, 0.0)]
    assert queued_in(complete(diamond, report(diamond, "B", 1))) == []  # D still waits for C
    assert queued_in(complete(diamond, report(diamond, "C", 1))) == [("D", 1, 0.0)]
    complete(diamond, report(diamond, "D", 1))
    diamond.refresh_from_db()
    assert (diamond.status, diamond.completed_nodes) == (ExecutionStatus.COMPLETED, 4)


@pytest.mark.django_db
def test_a_duplicate_or_stale_report_changes_nothing(diamond: Execution) -> None:
    complete(diamond, report(diamond, "A", 1))
    assert queued_in(complete(diamond, report(diamond, "A", 1), report(diamond, "B", 7))) == []
    diamond.refresh_from_db()
    assert diamond.completed_nodes == 1


@pytest.mark.django_db
def test_a_failure_is_retried_with_its_delay_then_gives_up_failing_the_execution_and_skipping_the_rest(
    diamond: Execution,
) -> None:
    complete(diamond, report(diamond, "A", 1))
    assert queued_in(complete(diamond, report(diamond, "B", 1, NodeStatus.FAILED))) == [("B", 2, 1.0)]
    complete(diamond, report(diamond, "B", 2, NodeStatus.FAILED))
    diamond.refresh_from_db()
    assert (diamond.status, diamond.error) == (ExecutionStatus.FAILED, "node 'B' failed: boom")
    assert statuses(diamond) == {"A": "COMPLETED", "B": "FAILED", "C": "QUEUED", "D": "SKIPPED"}


@pytest.mark.django_db
def test_a_lost_attempt_gets_a_new_one_that_does_not_use_up_the_budget(diamond: Execution) -> None:
    batch = in_batch(
        lambda batch: apply.apply_losses([Loss((str(diamond.pk), "A", 1), "worker died")], batch)
    )
    assert queued_in(batch) == [("A", 2, 0.0)]
    node = NodeRun.objects.get(execution=diamond, node_id="A")
    assert (node.status, node.lost_attempts) == (NodeStatus.QUEUED, 1)
