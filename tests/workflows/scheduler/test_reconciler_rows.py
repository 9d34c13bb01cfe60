"""The reconciler's database reads page through every row: no number of other rows starves one."""

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from workflows import services
from workflows.models import ExecutionStatus, NodeRun, NodeStatus, OutboxMessage
from workflows.scheduler import reconciler

pytestmark = pytest.mark.django_db


def fan_out(width: int) -> dict[str, Any]:
    nodes = [{"id": f"n{i}", "handler": "llm"} for i in range(width)]
    return {"name": "fan-out", "dag": {"nodes": nodes}}


def test_every_active_attempt_queued_before_the_restart_is_read_across_pages(monkeypatch: Any) -> None:
    monkeypatch.setattr(reconciler, "PAGE_SIZE", 4)
    execution = services.workflow_submit(data=fan_out(23))
    restart = timezone.now()
    rows = list(NodeRun.objects.filter(execution=execution).order_by("pk"))
    for index, row in enumerate(rows):
        row.status = [NodeStatus.QUEUED, NodeStatus.RUNNING, NodeStatus.COMPLETED][index % 3]
        row.attempt = 1
        row.queued_at = restart - timedelta(seconds=1) if index % 5 else restart + timedelta(seconds=1)
    NodeRun.objects.bulk_update(rows, ["status", "attempt", "queued_at"])

    found = list(reconciler.active_queued_before(restart))

    expected = [
        (str(execution.pk), row.node_id, 1) for index, row in enumerate(rows) if index % 3 != 2 and index % 5
    ]
    assert found == expected and len(found) > 3 * reconciler.PAGE_SIZE


def test_running_executions_with_a_ready_node_never_dispatched_and_no_start_waiting(monkeypatch: Any) -> None:
    monkeypatch.setattr(reconciler, "PAGE_SIZE", 2)
    lost = [services.workflow_submit(data=fan_out(2)) for _ in range(5)]
    waiting = services.workflow_submit(data=fan_out(2))
    started = services.workflow_submit(data=fan_out(2))
    pending = services.workflow_submit(data=fan_out(2))
    for execution in [*lost, waiting, started]:
        services.execution_trigger(execution_id=execution.pk)
    OutboxMessage.objects.exclude(key=str(waiting.pk)).delete()
    NodeRun.objects.filter(execution=started).update(status=NodeStatus.QUEUED, attempt=1)

    found = set(reconciler.unstarted_executions())

    assert found == {str(execution.pk) for execution in lost}
    assert pending.status == ExecutionStatus.PENDING
