"""JSON bodies for the errors Django answers itself (handler400/403/404/500), outside any DRF view.

They follow the API's error shape, `{"detail", "code", "errors"}`, on every route, the admin
included: a JSON 404 is as readable in a browser as an HTML one, and clients never have to parse
HTML. With DEBUG on, Django shows its debug pages instead, as usual.
"""

from typing import Any

from django.conf import settings
from django.core.exceptions import (
    DisallowedHost,
    RequestDataTooBig,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.http import HttpRequest, JsonResponse

from workflows.api.exceptions import error_body, shown_path


def json_error(
    status: int, code: str, detail: str, errors: list[dict[str, Any]] | None = None
) -> JsonResponse:
    """An error response in the API's shape."""
    return JsonResponse(error_body(code, detail, errors), status=status)


def too_large(limit: int) -> JsonResponse:
    return json_error(413, "too_large", f"request body is larger than the {limit}-byte limit")


def bad_request(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """handler400: Django's SuspiciousOperation family, named without echoing what the client sent."""
    if isinstance(exception, RequestDataTooBig):
        return too_large(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
    if isinstance(exception, DisallowedHost):
        detail = "the Host header names a host this server does not serve"
    elif isinstance(exception, TooManyFieldsSent | TooManyFilesSent):
        detail = "the request has more form fields or files than this server accepts"
    else:
        detail = "the request is malformed and was refused"
    return json_error(400, "bad_request", detail)


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """handler403."""
    return json_error(403, "permission_denied", f"you may not access {shown_path(request)}")


def not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """handler404: unknown URLs, and Http404 raised outside the API."""
    return json_error(404, "not_found", f"there is nothing at {shown_path(request)}")


def server_error(request: HttpRequest) -> JsonResponse:
    """handler500: no traceback and no exception text reach the client; Django logs them."""
    return json_error(500, "server_error", "internal server error; the details are in the server log")
