"""Tests for workflows.admin: the execution list's queries, the change page, the actions, permissions."""

import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from workflows import mirror, services
from workflows.admin import ExecutionAdmin
from workflows.dag_picture import STATUS_COLOURS
from workflows.models import (
    EventKind,
    Execution,
    ExecutionEvent,
    ExecutionStatus,
    NodeRun,
    WorkflowDefinition,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("test_redis")]  # the mirror: tests/conftest.py

CHANGELIST = reverse("admin:workflows_execution_changelist")
# session, user, the page's row count, the rows, the name filter's choices: whatever the page size.
LIST_PAGE_QUERIES = 5

DIAMOND = {
    "name": "Diamond",
    "dag": {
        "nodes": [
            {"id": "A", "handler": "input", "dependencies": [], "config": {"topic": "cats"}},
            {"id": "B", "handler": "llm", "dependencies": ["A"], "config": {}},
            {"id": "C", "handler": "llm", "dependencies": ["A"], "config": {}},
            {"id": "D", "handler": "output", "dependencies": ["B", "C"], "config": {}},
        ]
    },
}


def change_url(execution: Execution) -> str:
    return reverse("admin:workflows_execution_change", args=[execution.pk])


def make_executions(count: int, **fields: Any) -> list[Execution]:
    """`count` executions, each a minute newer than the last, in a mix of statuses."""
    definition, _ = WorkflowDefinition.objects.get_or_create(
        digest="0" * 64, defaults={"name": "Bulk", "spec": DIAMOND, "node_count": 4}
    )
    statuses = list(ExecutionStatus)
    base = timezone.now() - timedelta(days=1)
    executions = []
    for i in range(count):
        started = base + timedelta(minutes=i)
        status = statuses[i % len(statuses)]
        finished = started + timedelta(seconds=i) if status in {"COMPLETED", "FAILED", "CANCELLED"} else None
        execution = Execution.objects.create(
            definition=definition,
            name=f"bulk-{i % 3}",
            status=status,
            total_nodes=4,
            completed_nodes=i % 5,
            failed_nodes=int(status == "FAILED"),
            started_at=started if status != "PENDING" else None,
            finished_at=finished,
            **fields,
        )
        Execution.objects.filter(pk=execution.pk).update(created_at=started)
        executions.append(execution)
    return executions


def cells(html: str, column: str) -> list[str]:
    """The contents of an inline's column, row by row."""
    return re.findall(rf'<td class="field-{column}">\s*<p>(.*?)</p>', html, flags=re.DOTALL)


def listed_ids(html: str) -> list[str]:
    return re.findall(r'<th class="field-name"><a href="/admin/workflows/execution/([0-9a-f-]{36})/', html)


@pytest.mark.parametrize("page_size", [2, 40])
def test_list_page_runs_the_same_queries_whatever_its_size(
    admin_client: Client, django_assert_num_queries: Any, monkeypatch: pytest.MonkeyPatch, page_size: int
) -> None:
    make_executions(page_size + 1)
    monkeypatch.setattr(ExecutionAdmin, "list_per_page", page_size)
    with django_assert_num_queries(LIST_PAGE_QUERIES):
        response = admin_client.get(CHANGELIST)
    assert response.status_code == 200
    assert len(listed_ids(response.content.decode())) == page_size


def test_list_is_newest_first_with_badge_progress_and_duration(admin_client: Client) -> None:
    executions = make_executions(5)
    html = admin_client.get(CHANGELIST).content.decode()
    assert listed_ids(html) == [str(execution.pk) for execution in reversed(executions)]
    failed = executions[3]  # FAILED, 3/4 done, finished 3 s after it started
    row = html[html.index(str(failed.pk)) :]
    assert f"background:{STATUS_COLOURS['FAILED']}" in row
    assert "3/4 (1 failed)" in row
    assert "3.000s" in row
    assert "so far" in html  # the RUNNING one


def test_list_sorts_by_duration_counting_running_ones_so_far(admin_client: Client) -> None:
    executions = make_executions(7)
    now = timezone.now()

    def ran_for(execution: Execution) -> timedelta:
        return (execution.finished_at or now) - execution.started_at

    started = sorted((e for e in executions if e.started_at), key=ran_for)
    not_started = {str(e.pk) for e in executions if not e.started_at}
    column = ExecutionAdmin.list_display.index("duration") + 1
    for order, expected in ((f"{column}", started), (f"-{column}", started[::-1])):
        listed = listed_ids(admin_client.get(CHANGELIST, {"o": order}).content.decode())
        started_part = listed[len(not_started) :] if order == f"{column}" else listed[: len(started)]
        assert started_part == [str(e.pk) for e in expected], order
        assert not_started == set(listed) - set(started_part), order


def test_list_filters_by_status_and_name(admin_client: Client) -> None:
    executions = make_executions(10)
    html = admin_client.get(CHANGELIST, {"status__exact": "FAILED", "name": "bulk-0"}).content.decode()
    expected = [e for e in executions if e.status == "FAILED" and e.name == "bulk-0"]
    assert expected and listed_ids(html) == [str(execution.pk) for execution in reversed(expected)]


def test_search_finds_an_execution_by_id_or_by_name(admin_client: Client) -> None:
    executions = make_executions(6)
    wanted = executions[2]
    for term in (str(wanted.pk), str(wanted.pk).upper(), wanted.pk.hex):
        assert listed_ids(admin_client.get(CHANGELIST, {"q": term}).content.decode()) == [str(wanted.pk)]
    by_name = listed_ids(admin_client.get(CHANGELIST, {"q": "bulk-2"}).content.decode())
    assert sorted(by_name) == sorted(str(e.pk) for e in executions if e.name == "bulk-2")


def finished_diamond() -> Execution:
    """A submitted diamond whose nodes ran as a worker would have: A, B done, C failed, D skipped."""
    execution = services.workflow_submit(data=DIAMOND, trigger=True)
    now = timezone.now()
    outcomes = {
        "A": {"status": "COMPLETED", "output": {"topic": "cats", "html": "<b>bold</b>"}},
        "B": {"status": "COMPLETED", "output": {"text": "ok"}},
        "C": {"status": "FAILED", "error": "HTTP 500 from <upstream>"},
        "D": {"status": "SKIPPED"},
    }
    for node_id, outcome in outcomes.items():
        ran = outcome["status"] != "SKIPPED"
        NodeRun.objects.filter(execution=execution, node_id=node_id).update(
            attempt=int(ran),
            started_at=now - timedelta(seconds=2) if ran else None,
            finished_at=now if ran else None,
            worker="worker-1@host" if ran else "",
            **outcome,
        )
        ExecutionEvent.objects.create(execution=execution, kind=EventKind.NODE_COMPLETED, node_id=node_id)
    Execution.objects.filter(pk=execution.pk).update(
        status="FAILED",
        completed_nodes=2,
        failed_nodes=1,
        started_at=now - timedelta(seconds=3),
        finished_at=now,
    )
    mirror.client().delete(mirror.key(execution.pk))
    execution.refresh_from_db()
    return execution


def test_change_page_shows_nodes_events_and_the_dag_picture(admin_client: Client) -> None:
    execution = finished_diamond()
    response = admin_client.get(change_url(execution))
    assert response.status_code == 200
    html = response.content.decode()
    nodes_table = html[html.index('id="nodes-heading"') : html.index('id="events-heading"')]
    events_table = html[html.index('id="events-heading"') :]
    states = {"A": "COMPLETED", "B": "COMPLETED", "C": "FAILED", "D": "SKIPPED"}
    assert cells(nodes_table, "node_id") == list(states)
    assert [re.sub(r"<.*?>", "", cell) for cell in cells(nodes_table, "state")] == list(states.values())
    assert cells(nodes_table, "worker") == ["worker-1@host"] * 3 + ["-"]
    picture = html[html.index('<div class="dag-picture"') :]
    svg = picture[picture.index("<svg") : picture.index("</svg>")]
    for node_id, status in states.items():
        assert f">{node_id}</text>" in svg
        assert f'fill="{STATUS_COLOURS[status]}"' in svg
    outputs = cells(nodes_table, "output_or_error")
    assert "&quot;html&quot;: &quot;&lt;b&gt;bold&lt;/b&gt;&quot;" in outputs[0]  # pretty and escaped
    assert "HTTP 500 from &lt;upstream&gt;" in outputs[2]
    assert "<b>bold</b>" not in html
    assert cells(events_table, "kind") == ["Submitted", "Triggered", *["Node Completed"] * 4]
    assert cells(events_table, "node_id") == ["-", "-", "A", "B", "C", "D"]
    assert "3.000s" in html  # the execution's duration
    assert 'name="_save"' not in html  # nothing to edit


def test_execution_fields_cannot_be_changed(admin_client: Client) -> None:
    execution = finished_diamond()
    response = admin_client.post(change_url(execution), {"name": "renamed", "status": "COMPLETED"})
    assert response.status_code == 403
    execution.refresh_from_db()
    assert (execution.name, execution.status) == ("Diamond", "FAILED")
    assert admin_client.get(reverse("admin:workflows_execution_add")).status_code == 403


def run_action(client: Client, action: str, *executions: Execution) -> list[str]:
    response = client.post(
        CHANGELIST,
        {"action": action, "_selected_action": [str(e.pk) for e in executions], "index": 0},
        follow=True,
    )
    assert response.status_code == 200
    return [str(message) for message in response.context["messages"]]


def test_trigger_action_triggers_pending_and_reports_refusals(admin_client: Client) -> None:
    pending = services.workflow_submit(data=DIAMOND)
    running = services.workflow_submit(data=DIAMOND, trigger=True)
    messages = run_action(admin_client, "trigger", pending, running)
    assert f"execution '{running.pk}' was already triggered; its status is RUNNING" in messages
    assert "Triggered 1 execution." in messages
    pending.refresh_from_db()
    assert pending.status == "RUNNING"
    logged = LogEntry.objects.get(object_id=str(pending.pk))
    assert (logged.user.username, logged.get_change_message()) == ("admin", "Triggered through the admin.")
    assert not LogEntry.objects.filter(object_id=str(running.pk)).exists()


def test_cancel_action_cancels_and_reports_refusals(admin_client: Client) -> None:
    running = services.workflow_submit(data=DIAMOND, trigger=True)
    finished = finished_diamond()
    messages = run_action(admin_client, "cancel", running, finished)
    assert "Cancelled 1 execution." in messages
    assert any(str(finished.pk) in message and "already finished" in message for message in messages)
    running.refresh_from_db()
    assert running.status == "CANCELLED"


def test_retry_action_restarts_a_failed_execution_and_refuses_a_pending_one(admin_client: Client) -> None:
    failed = finished_diamond()
    pending = services.workflow_submit(data=DIAMOND)
    messages = run_action(admin_client, "retry", failed, pending)
    assert "Retried 1 execution." in messages
    assert any(str(pending.pk) in message and "FAILED or CANCELLED" in message for message in messages)
    failed.refresh_from_db()
    assert failed.status == "RUNNING"
    assert dict(failed.nodes.values_list("node_id", "status")) == {
        "A": "COMPLETED",
        "B": "COMPLETED",
        "C": "PENDING",
        "D": "PENDING",
    }


def staff_client(username: str, *codenames: str) -> Client:
    user = User.objects.create_user(username, password="unused-password", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


def offered_actions(client: Client) -> set[str]:
    return set(re.findall(r'<option value="(\w+)"', client.get(CHANGELIST).content.decode()))


def test_actions_need_the_change_permission_and_deleting_needs_a_superuser(admin_client: Client) -> None:
    execution = finished_diamond()
    viewer = staff_client("viewer", "view_execution")
    operator = staff_client("operator", "view_execution", "change_execution", "delete_execution")
    assert viewer.get(change_url(execution)).status_code == 200
    assert offered_actions(viewer) == set()
    assert offered_actions(operator) == {"trigger", "cancel", "retry"}
    assert offered_actions(admin_client) == {"trigger", "cancel", "retry", "delete_selected"}
    delete_url = reverse("admin:workflows_execution_delete", args=[execution.pk])
    assert operator.post(delete_url, {"post": "yes"}).status_code == 403
    assert admin_client.post(delete_url, {"post": "yes"}).status_code == 302
    assert not Execution.objects.filter(pk=execution.pk).exists()


def test_definition_page_shows_its_spec_and_picture(admin_client: Client) -> None:
    execution = finished_diamond()
    url = reverse("admin:workflows_workflowdefinition_change", args=[execution.definition_id])
    html = admin_client.get(url).content.decode()
    assert "<svg" in html and ">D</text>" in html
    assert "&quot;topic&quot;: &quot;cats&quot;" in html
