"""Retention on the real stack: old executions purged while new ones run, by the command and by
Celery beat through the workers."""

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import requests

from devtools.devstack import PYTHON, Stack, launch, log_tail, stop_process, wait_until
from workflows import mirror

PURGE_DEADLINE_S = 90.0


def chain(name: str, length: int, latency_s: float, **last: Any) -> dict[str, Any]:
    """A chain of mocked calls; `last` goes into the last node's config (status_code=500 fails it)."""
    nodes = [
        {
            "id": f"n{i}",
            "handler": "call_external_service",
            "dependencies": [f"n{i - 1}"] if i else [],
            "config": {"url": f"http://svc/{i}", "mock_latency_seconds": latency_s},
            "retry": 1,
        }
        for i in range(length)
    ]
    nodes[-1]["config"].update(last)
    return {"name": name, "dag": {"nodes": nodes}}


def finished(stack: Stack, workflows: list[dict[str, Any]]) -> list[str]:
    """Run the workflows to their end; their ids."""
    ids = [stack.submit(workflow, trigger=True) for workflow in workflows]
    for execution_id in ids:
        stack.wait_finished(execution_id)
    return ids


def backdate(stack: Stack, execution_ids: list[str], days: int) -> None:
    """Make the executions look finished `days` ago, as they would be after that long."""
    code = (
        "from datetime import timedelta; from django.utils import timezone; "
        "from workflows.models import Execution; "
        f"print(Execution.objects.filter(pk__in={execution_ids!r})"
        f".update(finished_at=timezone.now() - timedelta(days={days})))"
    )
    assert stack.manage("shell", "--no-imports", "-c", code).stdout.strip() == str(len(execution_ids))


def found(stack: Stack, execution_id: str) -> bool:
    response = requests.get(stack.url(f"/workflows/{execution_id}"), timeout=30)
    assert response.status_code in {200, 404}, response.text
    return response.status_code == 200


def mirrored(stack: Stack, execution_id: str) -> bool:
    return bool(redis.Redis.from_url(stack.env["REDIS_URL"]).exists(mirror.key(execution_id)))


def test_a_purge_removes_old_executions_while_new_ones_run(stack: Stack) -> None:
    old = finished(
        stack, [chain("old", 2, 0), chain("old", 1, 0), chain("old-failed", 1, 0, status_code=500)]
    )
    (recent,) = finished(stack, [chain("recent", 2, 0)])
    recent_events = stack.events(recent)
    backdate(stack, old, days=40)
    assert all(mirrored(stack, execution_id) for execution_id in old)  # mirrored when they finished
    # long enough to outlast the two commands (each a Django start-up) on a loaded machine
    running = [stack.submit(chain("running", 2, 15.0), trigger=True) for _ in range(3)]
    wait_until(
        lambda: all(stack.status(r)["status"] == "RUNNING" for r in running), 60, "new executions to run"
    )

    dry = stack.manage("purge_executions", "--older-than", "30d", "--dry-run").stdout
    assert dry.startswith("would delete (dry run) 3 execution(s)"), dry
    assert all(found(stack, execution_id) for execution_id in old)
    purge = stack.manage("purge_executions", "--older-than", "30d", "--batch-size", "2").stdout
    still_running = [stack.status(r)["status"] for r in running]

    assert purge.startswith("deleted 3 execution(s) CANCELLED, COMPLETED, FAILED finished before "), purge
    assert "with 4 node(s)" in purge, purge
    assert "RUNNING" in still_running, f"the new executions finished before the purge: {still_running}"
    assert not any(found(stack, execution_id) or mirrored(stack, execution_id) for execution_id in old)
    assert stack.events(recent) == recent_events and stack.status(recent)["status"] == "COMPLETED"
    for execution_id in running:
        state = stack.wait_finished(execution_id, deadline_s=120)
        assert state["status"] == "COMPLETED", state
        assert set(state["node_states"].values()) == {"COMPLETED"}
        assert [event["kind"] for event in stack.events(execution_id)].count("node_completed") == 2


@pytest.fixture
def every_second(stack: Stack) -> Iterator[None]:
    """The purge's periodic task due every second, as an operator may set it in the admin; put
    back to hourly afterwards."""
    code = (
        "from django_celery_beat.models import IntervalSchedule, PeriodicTask; "
        "from workflows.tasks import PURGE_TASK; "
        "every, _ = IntervalSchedule.objects.get_or_create(every={every}, period='{period}'); "
        "print(PeriodicTask.objects.filter(task=PURGE_TASK).update(interval=every))"
    )
    assert (
        stack.manage("shell", "--no-imports", "-c", code.format(every=1, period="seconds")).stdout.strip()
        == "1"
    )
    yield
    stack.manage("shell", "--no-imports", "-c", code.format(every=1, period="hours"))


@pytest.mark.usefixtures("every_second")
def test_celery_beat_has_the_workers_purge_old_executions(stack: Stack) -> None:
    old = finished(stack, [chain("old", 1, 0)])
    (recent,) = finished(stack, [chain("recent", 1, 0)])
    backdate(stack, old, days=31)
    log = stack.workdir / "beat.log"
    beat = launch(
        [PYTHON, "-m", "celery", "-A", "workflowsite", "beat", "--loglevel", "INFO"], log, stack.env
    )
    try:
        wait_until(
            lambda: not found(stack, old[0]), PURGE_DEADLINE_S, "beat's purge of the old execution", 0.5
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}; beat log:\n{log_tail(log)}") from None
    finally:
        stop_process(beat)

    assert found(stack, recent)
    worker_log = (stack.workdir / "worker.log").read_text(errors="replace")
    assert "retention purge: Purged(executions=1" in worker_log, json.dumps(worker_log[-2000:])
