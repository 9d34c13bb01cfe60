"""Executions record who submitted, triggered, cancelled and retried them: through the API, the
admin, and the management commands (which record no user)."""

import json
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token

from workflows import mirror, services
from workflows.models import Execution, ExecutionStatus

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("test_redis")]

WORKFLOW = {"name": "actors", "dag": {"nodes": [{"id": "A", "handler": "input"}]}}
OPERATOR = ("view_execution", "add_execution", "change_execution")


def operator(username: str, *, is_staff: bool = False) -> User:
    user = User.objects.create_user(username, password="unused-password", is_staff=is_staff)
    user.user_permissions.set(Permission.objects.filter(codename__in=OPERATOR))
    return user


def token_of(user: User) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Token {Token.objects.get_or_create(user=user)[0].key}"}


def history(client: Client, execution_id: str) -> list[tuple[str, Any]]:
    """(kind, who) of each event that names who acted."""
    events = client.get(f"/workflows/{execution_id}/events").json()["results"]
    return [(event["kind"], event["detail"]["by"]) for event in events if "by" in event["detail"]]


def list_row(client: Client, execution_id: str) -> dict[str, Any]:
    rows = client.get("/workflows").json()["results"]
    return next(row for row in rows if row["execution_id"] == execution_id)


def test_the_api_records_each_actor_on_the_execution_its_events_and_its_list_row(client: Client) -> None:
    alice, bob, carol = operator("alice"), operator("bob"), operator("carol")
    submitted = client.post(
        "/workflows", json.dumps(WORKFLOW), content_type="application/json", **token_of(alice)
    )
    execution_id = submitted.json()["execution_id"]

    assert client.post(f"/workflows/{execution_id}/trigger", **token_of(bob)).status_code == 200
    assert client.post(f"/workflows/{execution_id}/cancel", **token_of(carol)).status_code == 200
    assert client.post(f"/workflows/{execution_id}/retry", **token_of(alice)).status_code == 200

    execution = Execution.objects.get(pk=execution_id)
    assert (execution.submitted_by, execution.triggered_by, execution.cancelled_by, execution.retried_by) == (
        alice,
        bob,
        carol,
        alice,
    )
    assert history(client, execution_id) == [
        ("submitted", "alice"),
        ("triggered", "bob"),
        ("cancelled", "carol"),
        ("retried", "alice"),
    ]
    row = list_row(client, execution_id)
    assert [row[field] for field in ("submitted_by", "triggered_by", "cancelled_by", "retried_by")] == [
        "alice",
        "bob",
        "carol",
        "alice",
    ]


def test_submitting_with_trigger_records_the_submitter_as_the_trigger(client: Client) -> None:
    alice = operator("alice")
    response = client.post(
        "/workflows?trigger=true", json.dumps(WORKFLOW), content_type="application/json", **token_of(alice)
    )

    execution = Execution.objects.get(pk=response.json()["execution_id"])
    assert (execution.submitted_by, execution.triggered_by) == (alice, alice)


def test_the_admins_actions_record_the_signed_in_user(client: Client) -> None:
    dave = operator("dave", is_staff=True)
    client.force_login(dave)
    execution = services.workflow_submit(data=WORKFLOW)

    client.post(
        reverse("admin:workflows_execution_changelist"),
        {"action": "trigger", "_selected_action": [str(execution.pk)], "index": 0},
    )

    execution.refresh_from_db()
    assert (execution.status, execution.triggered_by) == (ExecutionStatus.RUNNING, dave)
    assert history(client, str(execution.pk))[-1] == ("triggered", "dave")
    page = client.get(reverse("admin:workflows_execution_change", args=[execution.pk])).content.decode()
    assert "Triggered by" in page and ">dave<" in page


def test_commands_and_anonymous_requests_record_no_user(client: Client) -> None:
    execution_id = client.post("/workflows", json.dumps(WORKFLOW), content_type="application/json").json()[
        "execution_id"
    ]

    call_command("cancel_execution", execution_id)

    execution = Execution.objects.get(pk=execution_id)
    assert (execution.submitted_by, execution.cancelled_by) == (None, None)
    assert history(client, execution_id) == [("submitted", None), ("cancelled", None)]
    assert list_row(client, execution_id)["submitted_by"] is None


def test_deleting_a_user_keeps_their_executions_and_their_name_in_the_history(client: Client) -> None:
    alice = operator("alice")
    execution = services.workflow_submit(data=WORKFLOW, actor=alice)

    alice.delete()

    execution.refresh_from_db()
    assert execution.submitted_by is None
    assert history(client, str(execution.pk)) == [("submitted", "alice")]


def status_actors(client: Client, execution_id: str) -> list[str | None]:
    status = client.get(f"/workflows/{execution_id}").json()
    return [status[field] for field in ("submitted_by", "triggered_by", "cancelled_by", "retried_by")]


def test_the_status_names_the_actors_from_the_mirror_and_after_a_rebuild(
    client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    alice, bob = operator("alice"), operator("bob")
    with django_capture_on_commit_callbacks(execute=True):  # the services publish to the mirror
        execution = services.workflow_submit(data=WORKFLOW, actor=alice)
        services.execution_trigger(execution_id=execution.pk, actor=bob)

    assert mirror.read(execution.pk)[0]["actors"] == {
        "submitted_by": "alice",
        "triggered_by": "bob",
        "cancelled_by": None,
        "retried_by": None,
    }
    assert status_actors(client, str(execution.pk)) == ["alice", "bob", None, None]

    # Redis lost the hash and the scheduler wrote it again: summary and nodes, no actors.
    mirror.client().delete(mirror.key(execution.pk))
    mirror.publish([(execution, list(execution.nodes.all()))])
    assert status_actors(client, str(execution.pk)) == ["alice", "bob", None, None]
    assert mirror.read(execution.pk)[0]["actors"]["submitted_by"] == "alice"
