"""One exception handler: every API error is JSON with a `detail` sentence, a `code` and `errors`."""

from typing import Any

from django.http import HttpRequest
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
