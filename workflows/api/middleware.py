"""Refuse requests that nothing should read, before anything reads them; the answers are JSON."""

import re
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from workflows.api.errors import json_error, too_large

_LENGTH = re.compile(r"[0-9]{1,20}")


class RequestGuardMiddleware:
    """Body size, body framing and query text, checked for every route (the admin's too).

    - A declared body over DATA_UPLOAD_MAX_MEMORY_SIZE (env WORKFLOW_MAX_BODY_BYTES) gets 413 at
      once: Django checks that limit only when a view reads `request.body`, and answers 400.
    - A chunked body (no Content-Length) gets 411: Django never reads one, so the view would
      take it for an empty body and answer with a misleading error.
    - A NUL character in a query parameter gets 400: PostgreSQL cannot hold one, so a filter
      such as `?name=%00` would fail in the database.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return refusal(request) or self.get_response(request)


def refusal(request: HttpRequest) -> HttpResponse | None:
    """The error response for a request the API must not process, or None."""
    if "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
        return json_error(
            411, "length_required", "request body must be sent with a Content-Length header, not chunked"
        )
    declared = (request.META.get("CONTENT_LENGTH") or "").strip()
    if declared and not _LENGTH.fullmatch(declared):
        return json_error(
            400, "bad_request", f"Content-Length header {declared[:40]!r} is not a valid length"
        )
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if declared and limit is not None and int(declared) > limit:
        return too_large(limit)
    for name, values in request.GET.lists():
        if "\x00" in name or any("\x00" in value for value in values):
            shown = name.replace("\x00", "\\u0000")[:40]
            return json_error(
                400, "bad_request", f"query parameter '{shown}' may not contain a NUL character (%00)"
            )
    return None
