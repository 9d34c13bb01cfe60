"""Size limits at submit: an input or a node config over its limit is refused with a JSON error
naming the node, the field and the limit, and nothing is stored (no services needed)."""

import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from workflows.models import Execution, WorkflowDefinition

pytestmark = pytest.mark.django_db
# The documented defaults (README, configuration).
MAX_CONFIG_BYTES = 256 * 1024
MAX_INPUT_BYTES = 512 * 1024


def json_size(value: object) -> int:
    return len(json.dumps(value, separators=(",", ":")))


def workflow(config: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    nodes = [
        {"id": "start", "handler": "input"},
        {"id": "big", "handler": "llm", "dependencies": ["start"], "config": config or {}},
    ]
    return {"name": "limits", "dag": {"nodes": nodes}, **fields}


def text_of(size: int) -> str:
    return "x" * size


def post(client: Client, data: object, query: str = "") -> Any:
    response = client.post(f"/workflows{query}", json.dumps(data), content_type="application/json")
    assert response["Content-Type"].startswith("application/json")
    return response


def assert_nothing_stored() -> None:
    assert not Execution.objects.exists()
    assert not WorkflowDefinition.objects.exists()


def test_a_node_config_at_its_limit_is_accepted_and_one_byte_more_is_not(client: Client) -> None:
    config = {"prompt": ""}
    config["prompt"] = text_of(MAX_CONFIG_BYTES - json_size(config))
    assert post(client, workflow(config)).status_code == 201

    config["prompt"] += "x"
    refused = post(client, workflow(config))

    assert refused.status_code == 400
    assert refused.json()["errors"][0]["field"] == "dag.nodes[1].config"


def test_a_node_config_over_its_limit_is_refused_naming_node_field_and_limit(client: Client) -> None:
    """The issue's request: a 1.5 MB config, anonymous, triggered at once."""
    response = post(client, workflow({"prompt": text_of(1_500_000)}), "?trigger=true")

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_workflow"
    limit = f"{MAX_CONFIG_BYTES:,} bytes (WORKFLOW_MAX_CONFIG_BYTES)"
    assert body["errors"] == [
        {
            "field": "dag.nodes[1].config",
            "message": f"node 'big': config is 1,500,013 bytes as JSON, over the limit of {limit}",
            "node": "big",
        }
    ]
    assert_nothing_stored()


def test_an_input_over_its_limit_is_refused_naming_the_field_and_limit(client: Client) -> None:
    response = post(client, workflow(input={"document": text_of(MAX_INPUT_BYTES)}))

    assert response.status_code == 400
    body = response.json()
    assert body["errors"] == [{"field": "input", "message": body["detail"], "node": None}]
    assert body["detail"].startswith("input is ")
    assert f"over the limit of {MAX_INPUT_BYTES:,} bytes (WORKFLOW_MAX_INPUT_BYTES)" in body["detail"]
    assert_nothing_stored()


def test_an_input_override_over_the_limit_is_refused_before_anything_is_submitted(tmp_path: Path) -> None:
    path = tmp_path / "workflow.json"
    path.write_text(json.dumps(workflow(input={"topic": "cats"})))
    override = json.dumps({"document": text_of(MAX_INPUT_BYTES)})
    stderr = StringIO()

    with pytest.raises(CommandError) as caught:
        call_command("submit_workflow", str(path), "--input", override, stderr=stderr)

    assert caught.value.returncode == 2
    assert f"{path}: invalid workflow: input is " in stderr.getvalue()
    assert "WORKFLOW_MAX_INPUT_BYTES" in stderr.getvalue()
    assert_nothing_stored()
