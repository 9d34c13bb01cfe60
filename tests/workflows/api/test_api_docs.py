"""Tests for the API's documentation: the OpenAPI schema, Swagger UI and the browsable API's form."""

import html
import json
import re
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.settings import patched_settings
from drf_spectacular.validation import validate_schema

from workflows import services
from workflows.api import examples
from workflows.api import urls as api_urls
from workflows.conf import conf
from workflows.models import Execution

OPENAPI_JSON = "application/vnd.oai.openapi+json"
ID = "{execution_id}"
API_PATHS = {
    "/workflows": {"get", "post"},
    f"/workflows/{ID}": {"get"},
    f"/workflows/{ID}/trigger": {"post"},
    f"/workflow/trigger/{ID}": {"post"},
    f"/workflows/{ID}/cancel": {"post"},
    f"/workflows/{ID}/retry": {"post"},
    f"/workflows/{ID}/events": {"get"},
    f"/workflows/{ID}/results": {"get"},
    "/health": {"get"},
}
# Statuses each operation must document besides its success, by operation id.
READ, WRITE = {"401", "403"}, {"401", "403", "415", "429"}
ERRORS = {
    "workflows_list": {"404", *READ},
    "workflows_submit": {"400", *WRITE},
    "executions_status": {"404", *READ},
    "executions_results": {"400", "404", *READ},
    "executions_events": {"404", *READ},
    "executions_trigger": {"404", "409", *WRITE},
    "executions_trigger_legacy": {"404", "409", *WRITE},
    "executions_cancel": {"404", "409", *WRITE},
    "executions_retry": {"404", "409", *WRITE},
    "health": {"503"},
}
HOOKED = {"PREPROCESSING_HOOKS": ["workflows.api.views.drop_optional_trailing_slash"]}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    response = Client().get("/schema", HTTP_ACCEPT=OPENAPI_JSON)
    assert response.status_code == 200
    assert response["Content-Type"].startswith(OPENAPI_JSON)
    return json.loads(response.content)


def operations(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every API operation by id (the schema's own route left out)."""
    return {
        operation["operationId"]: operation
        for path, item in schema["paths"].items()
        if path != "/schema"
        for operation in item.values()
    }


def test_schema_is_valid_openapi_3_listing_every_route(schema: dict[str, Any]) -> None:
    validate_schema(schema)
    assert schema["openapi"].startswith("3.")
    documented = {path.rstrip("/"): set(item) for path, item in schema["paths"].items() if path != "/schema"}
    assert documented == API_PATHS
    assert len(api_urls.urlpatterns) == len(API_PATHS), "a route was added: document it and list it here"


def test_schema_generation_has_no_warnings(tmp_path: Path) -> None:
    GENERATOR_STATS.reset()
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))


def test_every_operation_is_named_tagged_and_has_examples(schema: dict[str, Any]) -> None:
    found = operations(schema)
    assert set(found) == set(ERRORS)
    for operation_id, operation in found.items():
        assert operation["summary"] and operation["description"] and operation["tags"], operation_id
        statuses = set(operation["responses"])
        assert ERRORS[operation_id] <= statuses, operation_id
        for status, response in operation["responses"].items():
            content = response["content"]["application/json"]
            assert content.get("examples"), f"{operation_id} {status} has no example"
            if status in ERRORS[operation_id] and status != "503":
                assert content["schema"] == {"$ref": "#/components/schemas/Error"}, (operation_id, status)


def test_legacy_trigger_route_is_deprecated(schema: dict[str, Any]) -> None:
    legacy = operations(schema)["executions_trigger_legacy"]
    assert legacy["deprecated"] is True
    assert "deprecated" not in operations(schema)["executions_trigger"]


def test_list_documents_its_query_parameters(schema: dict[str, Any]) -> None:
    parameters = {param["name"]: param for param in operations(schema)["workflows_list"]["parameters"]}
    assert set(parameters) == {"status", "name", "page"}
    assert parameters["status"]["schema"]["enum"] == [
        "CANCELLED",
        "COMPLETED",
        "FAILED",
        "PENDING",
        "RUNNING",
    ]
    assert parameters["page"]["schema"]["type"] == "integer"


def test_invalid_workflow_error_lists_node_and_field(schema: dict[str, Any]) -> None:
    error = schema["components"]["schemas"]["ErrorItem"]
    assert {"field", "message", "node"} <= set(error["properties"])
    bad = operations(schema)["workflows_submit"]["responses"]["400"]["content"]["application/json"]
    first = bad["examples"]["InvalidWorkflow"]["value"]["errors"][0]
    assert first["node"] == "summary" and first["field"] == "dag.nodes[1].handler"


def test_trailing_slash_hook_documents_the_paths_clients_use() -> None:
    with patched_settings(HOOKED):
        hooked = SchemaGenerator().get_schema(request=None, public=True)
    validate_schema(hooked)
    assert set(hooked["paths"]) == {*API_PATHS, "/schema"}


def test_docs_serves_swagger_ui() -> None:
    response = Client().get("/docs")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert "swagger-ui" in page and "/schema" in page


@pytest.mark.django_db
def test_error_examples_are_what_the_api_answers(client: Client) -> None:
    def post(path: str, body: object) -> dict[str, Any]:
        return client.post(path, body, content_type="application/json").json()

    assert post("/workflows", examples.INVALID_WORKFLOW) == examples.INVALID_WORKFLOW_ERROR
    assert post("/workflows", examples.CYCLE) == examples.CYCLE_ERROR
    assert post("/workflows", "not json") == examples.NOT_JSON_ERROR
    assert client.get(f"/workflows/{examples.UNKNOWN_ID}").json() == examples.NOT_FOUND_ERROR
    assert client.get("/workflows?page=99").json() == examples.INVALID_PAGE_ERROR

    submitted = client.post("/workflows", examples.WORKFLOW, content_type="application/json")
    assert submitted.status_code == 201
    execution_id = submitted.json()["execution_id"]
    assert submitted.json() == {
        key: value.replace(examples.EXECUTION_ID, execution_id) for key, value in examples.SUBMITTED.items()
    }

    def as_example(body: dict[str, Any]) -> dict[str, Any]:
        return json.loads(json.dumps(body).replace(execution_id, examples.EXECUTION_ID))

    assert (
        client.post(f"/workflows/{execution_id}/trigger", content_type="application/json").status_code == 200
    )
    assert as_example(
        client.post(f"/workflows/{execution_id}/trigger", content_type="application/json").json()
    ) == (examples.ALREADY_TRIGGERED_ERROR)
    assert as_example(client.get(f"/workflows/{execution_id}/results").json()) == examples.NOT_FINISHED_ERROR
    assert (
        as_example(client.post(f"/workflows/{execution_id}/retry", content_type="application/json").json())
        == examples.NOT_RETRYABLE_ERROR
    )


@pytest.mark.django_db
def test_write_refused_examples_are_what_the_api_answers(client: Client, settings: Any) -> None:
    settings.WORKFLOWS_ALLOW_ANONYMOUS_WRITES = False
    assert client.post("/workflows", examples.WORKFLOW, content_type="application/json").json() == (
        examples.NO_TOKEN_ERROR
    )
    wrong = client.post(
        "/workflows", examples.WORKFLOW, content_type="application/json", HTTP_AUTHORIZATION="Bearer nope"
    )
    assert wrong.json() == examples.WRONG_TOKEN_ERROR
    client.force_login(User.objects.create_user("alice"))
    refused = client.post("/workflows", examples.WORKFLOW, content_type="application/json")
    assert refused.json() == examples.NO_PERMISSION_ERROR
    assert client.get("/workflows").json() == examples.NO_VIEW_PERMISSION_ERROR  # open to anonymous only
    settings.WORKFLOWS = {**settings.WORKFLOWS, "API_READS_REQUIRE_AUTH": True}
    conf.cache_clear()
    try:
        assert client.get("/workflows").json() == examples.NO_VIEW_PERMISSION_ERROR
        client.logout()
        assert client.get("/workflows").json() == examples.NO_READ_CREDENTIALS_ERROR
    finally:
        conf.cache_clear()
    settings.WORKFLOWS_ALLOW_ANONYMOUS_WRITES = True
    form = client.post("/workflows", "a=1", content_type="application/x-www-form-urlencoded")
    assert form.json() == examples.FORM_REFUSED_ERROR


def raw_data_form(page: str) -> object:
    """The initial content of the browsable API's raw-data form."""
    found = re.search(r'<textarea[^>]*name="_content"[^>]*>(.*?)</textarea>', page, re.DOTALL)
    assert found, "the page has no raw-data form"
    return json.loads(html.unescape(found.group(1)))


@pytest.mark.django_db
def test_browsable_api_offers_a_submit_form_with_an_example(client: Client) -> None:
    response = client.get("/workflows", HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    for field in ("name", "dag", "input", "defaults", "trigger"):
        assert f'name="{field}"' in page, f"the HTML form has no {field} field"
    initial = raw_data_form(page)
    assert initial == {**examples.WORKFLOW, "trigger": False}
    services.workflow_validate(data=initial)


@pytest.mark.django_db
def test_list_still_returns_rows(client: Client) -> None:
    client.post("/workflows", examples.WORKFLOW, content_type="application/json")
    rows = client.get("/workflows", HTTP_ACCEPT="application/json").json()["results"]
    assert [set(row) for row in rows] == [
        {
            "execution_id",
            "name",
            "status",
            "progress",
            "error",
            "created_at",
            "started_at",
            "finished_at",
            "submitted_by",
            "triggered_by",
            "cancelled_by",
            "retried_by",
        }
    ]


@pytest.mark.django_db
def test_html_form_submits_a_workflow(admin_client: Client) -> None:
    """The browsable API's form, posted with the admin's session (anonymous forms are refused)."""
    client = admin_client
    form = {
        "name": "From the form",
        "dag": json.dumps(examples.WORKFLOW_DAG),
        "input": json.dumps({"topic": "dogs"}),
        "defaults": "",
    }
    response = client.post("/workflows", form)
    assert response.status_code == 201, response.content
    execution = Execution.objects.get(pk=response.json()["execution_id"])
    assert (execution.name, execution.input, execution.status) == (
        "From the form",
        {"topic": "dogs"},
        "PENDING",
    )

    triggered = client.post("/workflows", {**form, "trigger": "on"})
    assert triggered.json()["status"] == "running"


@pytest.mark.django_db
def test_html_form_with_broken_json_names_the_field(admin_client: Client) -> None:
    response = admin_client.post("/workflows", {"name": "Broken", "dag": "{not json"})
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "dag"
