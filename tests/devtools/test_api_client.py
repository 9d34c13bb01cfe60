"""The one client of our API, against the real API on a live server: writes carry the token,
refusals say what was refused and why, lists are read across every page."""

import uuid
from typing import Any

import pytest

from devtools.api_client import ApiClient, ApiError

TOKEN = "a-token-for-the-client-tests"
PAGE_SIZE = 50
pytestmark = pytest.mark.usefixtures("test_redis")  # submissions write the mirror


def workflow(name: str) -> dict[str, Any]:
    return {"name": name, "dag": {"nodes": [{"id": "a", "handler": "input", "dependencies": []}]}}


def test_writes_carry_the_token_and_a_refusal_names_the_request_and_the_reason(
    live_server: Any, settings: Any
) -> None:
    settings.WORKFLOWS_API_TOKEN = TOKEN
    settings.WORKFLOWS_ALLOW_ANONYMOUS_WRITES = False
    name = f"client-{uuid.uuid4().hex[:8]}"
    execution_id = ApiClient(live_server.url, TOKEN).submit(workflow(name))
    assert ApiClient(live_server.url).status(execution_id)["status"] == "PENDING"
    with pytest.raises(ApiError, match=r"submit refused: HTTP 40[13] .*\S"):
        ApiClient(live_server.url).submit(workflow(name))
    with pytest.raises(ApiError, match=r"status of nope refused: HTTP 404"):
        ApiClient(live_server.url).status("nope")


def test_executions_reads_every_page_of_the_list(live_server: Any) -> None:
    client = ApiClient(live_server.url)
    name = f"pages-{uuid.uuid4().hex[:8]}"
    submitted = {client.submit(workflow(name)) for _ in range(PAGE_SIZE + 3)}
    assert {row["execution_id"] for row in client.executions(name=name)} == submitted
    assert client.count(name=name) == len(submitted)
