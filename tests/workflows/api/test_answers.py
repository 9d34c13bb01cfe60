"""The answers of submit, trigger, cancel, retry and results, rendered by their serializers, are
their OpenAPI examples' shape: the original engine's wire format."""

import json
from typing import Any

import pytest
from django.test import Client

from workflows.api import examples
from workflows.models import Execution, ExecutionStatus

pytestmark = pytest.mark.django_db
WORKFLOW = {"name": "answers", "dag": {"nodes": [{"id": "a", "handler": "input"}]}}


def as_example(body: dict[str, Any], execution_id: str) -> dict[str, Any]:
    return json.loads(json.dumps(body).replace(execution_id, examples.EXECUTION_ID))


def test_submit_trigger_cancel_retry_and_results_answer_as_documented(client: Client) -> None:
    submitted = client.post("/workflows", WORKFLOW, content_type="application/json").json()
    execution_id = submitted["execution_id"]
    assert as_example(submitted, execution_id) == examples.SUBMITTED
    answers = [
        client.post(f"/workflows/{execution_id}/{action}", content_type="application/json")
        for action in ("trigger", "cancel")
    ]
    assert [as_example(answer.json(), execution_id) for answer in answers] == [
        examples.TRIGGERED,
        examples.CANCELLED,
    ]
    results = client.get(f"/workflows/{execution_id}/results").json()
    assert results == {
        "execution_id": execution_id,
        "name": "answers",
        "status": "CANCELLED",
        "results": {},
        "error": "cancelled",
    }
    retried = client.post(f"/workflows/{execution_id}/retry", content_type="application/json").json()
    assert as_example(retried, execution_id) == examples.RETRYING
    assert Execution.objects.get(pk=execution_id).status == ExecutionStatus.RUNNING


def test_submit_and_trigger_in_one_call_says_so(client: Client) -> None:
    answer = client.post("/workflows?trigger=true", WORKFLOW, content_type="application/json").json()
    assert answer["status"] == "running"
    assert answer["message"] == "Workflow submitted and triggered"
