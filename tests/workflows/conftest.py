"""Fixtures for the engine's tests that need a database or the tests' Redis database."""

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.utils import timezone

from workflows.models import Execution, ExecutionEvent, NodeRun, OutboxMessage, WorkflowDefinition

MakeExecution = Callable[..., Execution]


@pytest.fixture
def make_execution(db: None) -> MakeExecution:
    """Executions of one node with one event and one outbox message, finished days ago (None:
    not finished), created 60 days ago."""

    def make(status: str, finished_days_ago: float | None) -> Execution:
        definition, _ = WorkflowDefinition.objects.get_or_create(
            digest="r" * 64, defaults={"name": "Old", "spec": {}, "node_count": 1}
        )
        now = timezone.now()
        finished = None if finished_days_ago is None else now - timedelta(days=finished_days_ago)
        made = Execution.objects.create(
            definition=definition, name="old", status=status, total_nodes=1, finished_at=finished
        )
        Execution.objects.filter(pk=made.pk).update(created_at=now - timedelta(days=60))
        NodeRun.objects.create(execution=made, node_id="a", handler="input", pending_deps=0, position=0)
        ExecutionEvent.objects.create(execution=made, kind="created")
        OutboxMessage.objects.create(topic="workflow.start", key=str(made.pk), payload={})
        return made

    return make
