"""GET /workflows/{id}/events pages through the history with a cursor: every event once, in order,
forwards and back, and an event written mid-walk neither shifts nor repeats the others."""

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from workflows import services
from workflows.api import examples
from workflows.conf import conf
from workflows.models import Execution, ExecutionEvent

pytestmark = pytest.mark.django_db
PAGE_SIZE = 3


@pytest.fixture
def small_pages(settings: Any) -> Iterator[None]:
    settings.WORKFLOWS = {**settings.WORKFLOWS, "EVENTS_PAGE_SIZE": str(PAGE_SIZE)}
    conf.cache_clear()
    yield
    conf.cache_clear()


@pytest.fixture
def execution() -> Execution:
    workflow = {"name": "history", "dag": {"nodes": [{"id": "a", "handler": "input"}]}}
    return services.workflow_submit(data=workflow, trigger=False)


def add_events(execution: Execution, count: int) -> None:
    ExecutionEvent.objects.bulk_create(
        ExecutionEvent(execution=execution, kind="node_queued", node_id="a", detail={"attempt": number})
        for number in range(count)
    )


def attempts(page: dict[str, Any]) -> list[Any]:
    return [event["detail"].get("attempt") for event in page["results"]]


def test_walking_next_then_previous_sees_every_event_once_in_order(
    client: Client, small_pages: None, execution: Execution
) -> None:
    add_events(execution, 3 * PAGE_SIZE + 1)
    expected = [None, *range(3 * PAGE_SIZE + 1)]  # the `submitted` event first
    pages = [client.get(f"/workflows/{execution.pk}/events").json()]
    assert pages[0]["previous"] is None
    while pages[-1]["next"]:
        pages.append(client.get(pages[-1]["next"]).json())
    assert [len(page["results"]) for page in pages] == [PAGE_SIZE] * 3 + [2]
    assert [attempt for page in pages for attempt in attempts(page)] == expected
    backwards = [pages[-1]]
    while backwards[-1]["previous"]:
        backwards.append(client.get(backwards[-1]["previous"]).json())
    assert [attempts(page) for page in backwards] == [attempts(page) for page in reversed(pages)]


def test_an_event_written_during_the_walk_comes_last_and_nothing_repeats(
    client: Client, small_pages: None, execution: Execution
) -> None:
    add_events(execution, 2 * PAGE_SIZE)
    first = client.get(f"/workflows/{execution.pk}/events").json()
    add_events(execution, 1)
    seen, page = attempts(first), first
    while page["next"]:
        page = client.get(page["next"]).json()
        seen += attempts(page)
    assert seen == [None, *range(2 * PAGE_SIZE), 0]


def test_the_page_size_is_the_setting(client: Client, execution: Execution) -> None:
    add_events(execution, conf().events_page_size + 5)
    page = client.get(f"/workflows/{execution.pk}/events").json()
    assert len(page["results"]) == conf().events_page_size == 100
    assert page["next"].startswith(f"http://testserver/workflows/{execution.pk}/events?cursor=")


def test_an_unknown_execution_is_404_and_a_bad_cursor_is_a_json_404(
    client: Client, execution: Execution
) -> None:
    assert client.get(f"/workflows/{examples.UNKNOWN_ID}/events").json() == examples.NOT_FOUND_ERROR
    response = client.get(f"/workflows/{execution.pk}/events?cursor=garbage")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_the_schema_example_is_a_page_of_event_objects(client: Client) -> None:
    schema = json.loads(client.get("/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json").content)
    content = schema["paths"]["/workflows/{execution_id}/events"]["get"]["responses"]["200"]["content"]
    page = content["application/json"]["examples"]["History"]["value"]
    assert page["results"] == [examples.EVENT]
    assert set(page) == {"next", "previous", "results"}
