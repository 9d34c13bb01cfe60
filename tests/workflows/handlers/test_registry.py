"""A handler another app registers (in its AppConfig.ready()) is one the API accepts and the
workers run, by its name or an alias, with no change to the engine."""

from typing import Any

import pytest
from django.test import Client

from workers.handler_threads import Job, run_all
from workflows.handlers import registry
from workflows.handlers.registry import NodeContext, register

pytestmark = pytest.mark.django_db


@pytest.fixture
def own_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registrations made by the test leave the process's registry as it was."""
    monkeypatch.setattr(registry, "_HANDLERS", dict(registry._HANDLERS))
    monkeypatch.setattr(registry, "_NAMES", dict(registry._NAMES))


def test_a_handler_registered_by_another_app_is_accepted_and_run(client: Client, own_registry: None) -> None:
    @register("shout", "yell")
    def shout(context: NodeContext) -> dict[str, Any]:
        return {"said": str(context.config["text"]).upper()}

    workflow = {"name": "app", "dag": {"nodes": [{"id": "a", "handler": "yell", "config": {"text": "hi"}}]}}
    assert client.post("/workflows", workflow, content_type="application/json").status_code == 201
    context = NodeContext(execution_id="e", node_id="a", attempt=1, config={"text": "hi"})
    [(_, output, error)] = list(run_all([Job("yell", context, 5)]))
    assert (output, error) == ({"said": "HI"}, "")
    assert registry.handler_names()["yell"] == "shout"


def test_a_name_nobody_registered_is_refused_naming_it(client: Client) -> None:
    workflow = {"name": "app", "dag": {"nodes": [{"id": "a", "handler": "shout"}]}}
    answer = client.post("/workflows", workflow, content_type="application/json")
    assert answer.status_code == 400
    assert answer.json()["errors"][0]["field"] == "dag.nodes[0].handler"
