"""The one domain error type; the API's exception handler maps it to an HTTP response."""

from typing import Any

MAX_SHOWN_ID = 64


class WorkflowError(Exception):
    """A request the engine refuses, with a machine code, a human message and an HTTP status."""

    def __init__(
        self, code: str, message: str, *, status: int = 400, errors: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.errors = errors or []


class NotFound(WorkflowError):
    """An execution id that names no execution."""

    def __init__(self, execution_id: object) -> None:
        shown = str(execution_id)
        shown = shown if len(shown) <= MAX_SHOWN_ID else shown[:MAX_SHOWN_ID] + "…"
        super().__init__("not_found", f"no execution with id '{shown}'", status=404)
