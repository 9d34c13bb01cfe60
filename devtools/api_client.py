"""The one HTTP client of our own API, for the test stacks, the benchmark and the soak."""

import json
import re
from typing import Any

import requests

REQUEST_TIMEOUT_S = 60.0
HEALTH_TIMEOUT_S = 10.0
HTML_TITLE = re.compile(r"<title>\s*(.*?)\s*</title>", re.DOTALL)


class ApiError(RuntimeError):
    """The API refused a request the caller needed; the message names the request and why."""


def error_summary(response: requests.Response) -> str:
    """One line for a refused request: the JSON detail, or the title of an HTML error page."""
    try:
        return str(response.json().get("detail", response.text[:200]))
    except ValueError:
        title = HTML_TITLE.search(response.text)
        return f"(HTML, not JSON) {' '.join(title.group(1).split())}" if title else response.text[:200]


class ApiClient:
    """Requests to one API; writes carry its token when it has one. No session is kept: each
    request opens its own connection, as independent clients do (the benchmark measures that)."""

    def __init__(self, base_url: str, token: str = "") -> None:
        self.base_url = base_url.rstrip("/")
        self.write_headers = {"Authorization": f"Bearer {token}"} if token.strip() else {}

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def get(self, path: str, timeout_s: float = REQUEST_TIMEOUT_S, **kwargs: Any) -> requests.Response:
        return requests.get(self.url(path), timeout=timeout_s, **kwargs)

    def post(self, path: str, timeout_s: float = REQUEST_TIMEOUT_S, **kwargs: Any) -> requests.Response:
        headers = {**kwargs.pop("headers", {}), **self.write_headers}
        return requests.post(self.url(path), headers=headers, timeout=timeout_s, **kwargs)

    def expect(self, response: requests.Response, status: int, what: str) -> requests.Response:
        """The response, when it has the status the caller needs; else ApiError."""
        if response.status_code != status:
            raise ApiError(f"{what} refused: HTTP {response.status_code} {error_summary(response)}")
        return response

    def health(self) -> requests.Response:
        return self.get("/health", timeout_s=HEALTH_TIMEOUT_S)

    def post_workflow(
        self, workflow: dict[str, Any] | bytes, *, trigger: bool = False, timeout_s: float = REQUEST_TIMEOUT_S
    ) -> requests.Response:
        """POST /workflows; a body already encoded is sent as it is (so only the request is timed)."""
        body = workflow if isinstance(workflow, bytes) else json.dumps(workflow).encode()
        path = "/workflows?trigger=true" if trigger else "/workflows"
        return self.post(path, timeout_s, data=body, headers={"Content-Type": "application/json"})

    def submit(self, workflow: dict[str, Any], *, trigger: bool = False) -> str:
        """Submit (and trigger, in a second request, when asked); the execution id."""
        response = self.expect(self.post_workflow(workflow), 201, "submit")
        execution_id = response.json()["execution_id"]
        if trigger:
            self.trigger(execution_id)
        return execution_id

    def trigger(self, execution_id: str) -> None:
        self.expect(self.post(f"/workflows/{execution_id}/trigger"), 200, f"trigger of {execution_id}")

    def status(self, execution_id: str) -> dict[str, Any]:
        return self.expect(self.get(f"/workflows/{execution_id}"), 200, f"status of {execution_id}").json()

    def events(self, execution_id: str) -> list[dict[str, Any]]:
        """The execution's history, oldest first (every page)."""
        return self.every_page(f"/workflows/{execution_id}/events", f"events of {execution_id}")

    def count(self, **filters: str) -> int:
        """How many executions match the list endpoint's filters (one cheap list query)."""
        response = self.get("/workflows", params=filters)
        return int(self.expect(response, 200, "list of executions").json()["count"])

    def executions(self, **filters: str) -> list[dict[str, Any]]:
        """Every execution matching the list endpoint's filters, as it shows them (all pages)."""
        return self.every_page("/workflows", "list", filters)

    def every_page(self, path: str, what: str, params: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """The results of every page of a paginated endpoint, following `next`."""
        rows: list[dict[str, Any]] = []
        url: str | None = self.url(path)
        while url:
            response = self.expect(requests.get(url, params=params, timeout=REQUEST_TIMEOUT_S), 200, what)
            page = response.json()
            rows.extend(page["results"])
            url, params = page["next"], None
        return rows
