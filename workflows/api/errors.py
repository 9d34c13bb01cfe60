"""Every HTTP error body, `{"detail", "code", "errors"}`: DRF's exception handler for the API's
views, and the handlers of the errors Django answers itself (handler400/403/404/500).

Django's own errors follow the API's shape on every route, the admin included: a JSON 404 is as
readable in a browser as an HTML one, and clients never have to parse HTML. With DEBUG on, Django
shows its debug pages instead, as usual.
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
from rest_framework import exceptions, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from workflows.errors import WorkflowError

_SHOWN_PATH_LENGTH = 200


def error_body(code: str, detail: str, errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The shape of every error the API and the site answer with."""
    return {"detail": detail, "code": code, "errors": errors or []}


def flatten(detail: Any, path: str = "") -> list[dict[str, str]]:
    """Turn DRF's nested error detail into a flat list of {field, message}."""
    if isinstance(detail, dict):
        return [
            item
            for key, value in detail.items()
            for item in flatten(value, f"{path}.{key}" if path else str(key))
        ]
    if isinstance(detail, list):
        return [item for value in detail for item in flatten(value, path)]
    return [{"field": path or "body", "message": str(detail)}]


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Map WorkflowError and DRF's own errors to JSON bodies with a one-sentence `detail`.

    Anything else is a bug: it is left to Django, which logs it and answers with handler500.
    """
    if isinstance(exc, WorkflowError):
        return Response(error_body(exc.code, exc.message, exc.errors), status=exc.status)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        errors = flatten(exc.detail)
        first = errors[0] if errors else {"field": "body", "message": "invalid request"}
        response.data = error_body("invalid_request", f"{first['field']}: {first['message']}", errors)
        response.status_code = status.HTTP_400_BAD_REQUEST
        return response
    detail = response.data.get("detail") if isinstance(response.data, dict) else None
    code = getattr(detail, "code", None) or "error"
    request = context.get("request")
    if isinstance(request, Request):
        detail = _sentence(exc, request, context.get("view")) or detail
    response.data = error_body(
        code, str(detail) if detail is not None else "the request failed", getattr(exc, "errors", None)
    )
    return response


def _sentence(exc: Exception, request: Request, view: Any) -> str | None:
    """Our wording for DRF errors whose own message does not say what to do instead."""
    if isinstance(exc, exceptions.MethodNotAllowed):
        allowed = ", ".join(getattr(view, "allowed_methods", []))
        return f"method {request.method} is not allowed on {shown_path(request)}; allowed: {allowed}"
    if isinstance(exc, exceptions.UnsupportedMediaType):
        accepted = ", ".join(parser.media_type for parser in request.parsers)
        sent = request.content_type.split(";")[0].strip()
        if not sent:
            return f"request body has no Content-Type header; send one of: {accepted}"
        return (
            f"request body has media type '{sent[:80]}', which is not accepted here; send one of: {accepted}"
        )
    return None


def shown_path(request: HttpRequest | Request) -> str:
    """The request path for a message, cut so that a huge URL cannot flood logs and responses."""
    path = request.path
    return path if len(path) <= _SHOWN_PATH_LENGTH else path[:_SHOWN_PATH_LENGTH] + "…"


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
