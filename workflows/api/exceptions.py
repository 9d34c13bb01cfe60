"""One exception handler: every API error is JSON with a `detail` sentence and, where useful, `errors`."""

from typing import Any

from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from workflows.errors import WorkflowError


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
    """Map WorkflowError and DRF's own errors to JSON bodies with a one-sentence `detail`."""
    if isinstance(exc, WorkflowError):
        return Response({"detail": exc.message, "code": exc.code, "errors": exc.errors}, status=exc.status)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        errors = flatten(exc.detail)
        first = errors[0] if errors else {"field": "body", "message": "invalid request"}
        response.data = {
            "detail": f"{first['field']}: {first['message']}",
            "code": "invalid_request",
            "errors": errors,
        }
        response.status_code = status.HTTP_400_BAD_REQUEST
    elif isinstance(exc, exceptions.ParseError):
        response.data = {
            "detail": f"request body is not valid JSON: {exc.detail}",
            "code": "parse_error",
            "errors": [],
        }
    return response
