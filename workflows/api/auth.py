"""Who may write: reads are open; writes need the API token, or a staff session, once a token is set.

The token is `settings.WORKFLOWS_API_TOKEN` (env WORKFLOWS_API_TOKEN), read on every request. Unset
means open writes, which settings.py allows only outside production unless
WORKFLOWS_ALLOW_ANONYMOUS_WRITES=true says so explicitly.
"""

import hmac
from typing import Any

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

SCHEMES = (b"bearer", b"token")  # `Token` is what DRF's own TokenAuthentication clients send


class ApiToken:
    """`request.auth` after a valid API token: it grants writes and names no user."""


def configured_token() -> str:
    return settings.WORKFLOWS_API_TOKEN


class ApiTokenAuthentication(BaseAuthentication):
    """`Authorization: Bearer <token>` (or `Token <token>`), compared in constant time.

    Other schemes are left to the next authenticator. A token presented to a server without one
    is ignored; a wrong one is refused with 401 on every method, so a client learns at once.
    """

    def authenticate(self, request: Request) -> tuple[None, ApiToken] | None:
        try:
            header = get_authorization_header(request)
        except UnicodeEncodeError:
            raise exceptions.AuthenticationFailed("the Authorization header is not ISO-8859-1 text") from None
        scheme, _, credentials = header.partition(b" ")
        expected = configured_token()
        if scheme.lower() not in SCHEMES or not expected:
            return None
        credentials = credentials.strip()
        if not credentials:
            raise exceptions.AuthenticationFailed(
                f"the Authorization header has no token after '{scheme.decode('latin-1')}'"
            )
        if not hmac.compare_digest(credentials, expected.encode()):
            raise exceptions.AuthenticationFailed("the API token in the Authorization header is not valid")
        return None, ApiToken()

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="workflows"'


class WritesNeedToken(BasePermission):
    """GET, HEAD and OPTIONS for anyone; other methods for the API token or an active staff session."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if request.method in SAFE_METHODS or not configured_token() or isinstance(request.auth, ApiToken):
            return True
        user = request.user
        if user is None:
            raise exceptions.NotAuthenticated(
                f"{request.method} needs the API token: send 'Authorization: Bearer <token>'"
            )
        if not (user.is_active and user.is_staff):
            name = user.get_username()
            raise exceptions.PermissionDenied(
                f"{request.method} needs the API token or a staff account; '{name}' is not staff"
            )
        return True


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """Describes ApiTokenAuthentication in the OpenAPI schema as an HTTP bearer scheme."""

    target_class = ApiTokenAuthentication
    name = "apiToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer"}

    def get_security_requirement(self, auto_schema: Any) -> dict[str, list[str]] | list[dict[str, list[str]]]:
        """Where WritesNeedToken decides, reads need no credentials (`{}`); writes need the token
        or the session cookie."""
        requirement: dict[str, list[str]] = {self.name: []}
        guarded = any(
            isinstance(permission, WritesNeedToken) for permission in auto_schema.view.get_permissions()
        )
        return [requirement, {}] if guarded and auto_schema.method in SAFE_METHODS else requirement
