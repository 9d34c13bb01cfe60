"""The retention purge: what is old and finished, durations, batches, the command and beat's entry."""

from collections.abc import Callable
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from workflows import mirror, retention
from workflows.models import (
    Execution,
    ExecutionEvent,
    NodeRun,
    OutboxMessage,
)
from workflows.tasks import PURGE_TASK

NOW = timezone.now()
DAY = timedelta(days=1)
MakeExecution = Callable[..., Execution]  # tests/workflows/conftest.py


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", 30 * DAY),
        ("12h", timedelta(hours=12)),
        ("90m", timedelta(minutes=90)),
        ("45s", timedelta(seconds=45)),
    ],
)
def test_a_duration_is_a_whole_number_and_a_unit(text: str, expected: timedelta) -> None:
    assert retention.parse_duration(text) == expected


@pytest.mark.parametrize("text", ["30", "d", "0d", "1.5d", "-1d", "30x", "30 days", ""])
def test_a_bad_duration_is_refused_naming_it(text: str) -> None:
    with pytest.raises(ValueError, match=rf"invalid duration {text!r}: expected .* like 30d"):
        retention.parse_duration(text)


def test_only_executions_finished_before_the_cutoff_are_selected(make_execution: MakeExecution) -> None:
    old = [make_execution(status, 31) for status in ("COMPLETED", "FAILED", "CANCELLED")]
    make_execution("COMPLETED", 29)  # recent
    make_execution("RUNNING", None)  # created 60 days ago, still running
    make_execution("PENDING", None)  # created 60 days ago, never triggered

    selected = retention.expired(before=NOW - 30 * DAY)

    assert set(selected) == set(old)


def test_the_selection_narrows_to_the_statuses_asked_for(make_execution: MakeExecution) -> None:
    failed = make_execution("FAILED", 31)
    make_execution("COMPLETED", 31)

    assert list(retention.expired(before=NOW, statuses={"FAILED"})) == [failed]


@pytest.mark.parametrize("statuses", [{"RUNNING"}, {"COMPLETED", "PENDING"}, set()])
def test_asking_for_an_unfinished_status_is_refused(statuses: set[str]) -> None:
    with pytest.raises(ValueError, match="only finished executions are purged"):
        retention.expired(before=NOW, statuses=statuses)


@pytest.mark.usefixtures("test_redis")
def test_a_purge_deletes_old_executions_with_their_rows_and_mirrors(make_execution: MakeExecution) -> None:
    old, kept = make_execution("COMPLETED", 31), make_execution("FAILED", 0.5)
    running = make_execution("RUNNING", None)
    mirror.publish([(kept, []), (running, [])])
    # a mirror that outlived its execution's finish (a worker's claim, a longer TTL set before)
    mirror.client().hset(mirror.key(old.pk), mirror.SUMMARY_FIELD, "{}")

    purged = retention.purge(older_than=30 * DAY, now=NOW)

    assert purged == retention.Purged(executions=1, nodes=1, events=1, outbox_messages=1)
    assert set(Execution.objects.all()) == {kept, running}
    for model in (NodeRun, ExecutionEvent):
        assert set(model.objects.values_list("execution_id", flat=True)) == {kept.pk, running.pk}
    assert set(OutboxMessage.objects.values_list("key", flat=True)) == {str(kept.pk), str(running.pk)}
    assert not mirror.client().exists(mirror.key(old.pk))
    assert mirror.client().exists(mirror.key(kept.pk)) and mirror.client().exists(mirror.key(running.pk))
    mirror.client().delete(mirror.key(kept.pk), mirror.key(running.pk))


@pytest.mark.parametrize(
    ("counts", "taken"),
    [([10, 20, 30], 3), ([30, 30, 1], 2), ([60, 1], 1), ([60], 1), ([], 0), ([20, 41], 1)],
)
def test_a_batch_takes_executions_up_to_its_node_budget_and_at_least_one(
    counts: list[int], taken: int
) -> None:
    rows = [(index, count) for index, count in enumerate(counts)]

    assert retention.within_nodes(rows, 60) == list(range(taken))


@pytest.mark.usefixtures("test_redis")
def test_a_purge_deletes_in_batches_of_primary_keys(make_execution: MakeExecution) -> None:
    for _ in range(5):
        make_execution("COMPLETED", 40)

    with CaptureQueriesContext(connection) as queries:
        purged = retention.purge(older_than=30 * DAY, batch_size=2, now=NOW)

    deletes = [q["sql"] for q in queries if q["sql"].startswith('DELETE FROM "workflows_execution"')]
    assert purged.executions == 5 and not Execution.objects.exists()
    assert len(deletes) == 3, deletes  # 2 + 2 + 1, each its own statement naming its keys
    assert all(" IN (" in sql for sql in deletes)


def test_a_dry_run_counts_and_deletes_nothing(make_execution: MakeExecution) -> None:
    make_execution("CANCELLED", 31)
    make_execution("COMPLETED", 31)

    purged = retention.purge(older_than=30 * DAY, dry_run=True, batch_size=1, now=NOW)

    assert purged == retention.Purged(executions=2, nodes=2, events=2, outbox_messages=2)
    assert Execution.objects.count() == 2 and NodeRun.objects.count() == 2


@pytest.mark.usefixtures("test_redis")
def test_the_command_purges_what_it_is_told_and_says_what(make_execution: MakeExecution) -> None:
    failed, completed = make_execution("FAILED", 2), make_execution("COMPLETED", 2)
    out = StringIO()

    call_command("purge_executions", "--older-than", "36h", "--status", "failed", "--dry-run", stdout=out)
    assert out.getvalue().startswith("would delete (dry run) 1 execution(s) FAILED finished before ")
    assert Execution.objects.count() == 2

    call_command("purge_executions", "--older-than", "36h", "--status", "failed", stdout=out)
    assert "deleted 1 execution(s) FAILED" in out.getvalue()
    assert "with 1 node(s), 1 event(s) and 1 outbox message(s)" in out.getvalue()
    assert list(Execution.objects.all()) == [completed] and failed not in Execution.objects.all()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--older-than", "30x"], "invalid duration '30x'"),
        (["--status", "RUNNING"], "invalid choice: 'RUNNING'"),
        (["--batch-size", "0"], "invalid batch size '0'"),
    ],
)
def test_the_command_refuses_bad_arguments_naming_them(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("purge_executions", *args)


@pytest.mark.usefixtures("test_redis")
def test_the_command_defaults_to_the_retention_setting(make_execution: MakeExecution) -> None:
    make_execution("COMPLETED", 31)
    make_execution("COMPLETED", 8)
    out = StringIO()

    call_command("purge_executions", "--dry-run", stdout=out)

    assert "1 execution(s)" in out.getvalue()  # WORKFLOW_RETENTION_DAYS is 30 by default


@pytest.mark.django_db
def test_celery_beat_has_the_hourly_purge_and_the_admin_shows_it() -> None:
    entry = PeriodicTask.objects.get(task=PURGE_TASK)
    assert entry.enabled and (entry.interval.every, entry.interval.period) == (1, "hours")
    assert entry.expire_seconds == 3600

    admin = User.objects.create_superuser("admin", "admin@example.com", "a-long-password")
    client = Client()
    client.force_login(admin)
    page = client.get(f"/admin/django_celery_beat/periodictask/{entry.pk}/change/")

    assert page.status_code == 200
    assert PURGE_TASK in page.content.decode() and entry.name in page.content.decode()
