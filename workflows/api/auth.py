"""Who may do what: users' tokens, the service token, model permissions, CSRF and write throttling."""

import hmac
import logging
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Permission
from django_redis.exceptions import ConnectionInterrupted
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from redis import RedisError
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.authtoken.models import Token
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from workflows.conf import conf

logger = logging.getLogger(__name__)
SCHEMES = (b"token", b"bearer")  # `Token` is DRF's own scheme; `Bearer` what clients of the original sent
SERVICE_USERNAME = "workflows-service"
VIEW, ADD, CHANGE = "workflows.view_execution", "workflows.add_execution", "workflows.change_execution"
SERVICE_PERMISSIONS = ("view_execution", "add_execution", "change_execution", "view_workflowdefinition")
INVALID_TOKEN = "the API token in the Authorization header is not valid"
# What an HTML form (or a no-cors fetch) on any site can send without a CORS preflight.
BROWSER_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data", "text/plain")


class ServiceToken:
    """`request.auth` after the shared WORKFLOWS_API_TOKEN: the request acts as the service user."""


def configured_token() -> str:
    return settings.WORKFLOWS_API_TOKEN


def service_user() -> AbstractBaseUser:
    """The user the shared token acts as, created on first use with every workflow permission
    except delete. Operators may change its permissions in the admin, or deactivate it."""
    user, created = get_user_model().objects.get_or_create(username=SERVICE_USERNAME)
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
        user.user_permissions.set(
            Permission.objects.filter(content_type__app_label="workflows", codename__in=SERVICE_PERMISSIONS)
        )
    return user


class TokenAuthentication(BaseAuthentication):
    """`Authorization: Token <key>` (or `Bearer <key>`): a user's token (admin, `manage.py
    drf_create_token`) or the shared WORKFLOWS_API_TOKEN, compared in constant time.

    Other schemes are left to the next authenticator. A wrong token is refused with 401 on every
    method, so a client learns at once.
    """

    def authenticate(self, request: Request) -> tuple[AbstractBaseUser, object] | None:
        try:
            header = get_authorization_header(request)
        except UnicodeEncodeError:
            raise exceptions.AuthenticationFailed("the Authorization header is not ISO-8859-1 text") from None
        scheme, _, credentials = header.partition(b" ")
        if scheme.lower() not in SCHEMES:
            return None
        credentials = credentials.strip()
        if not credentials:
            raise exceptions.AuthenticationFailed(
                f"the Authorization header has no token after '{scheme.decode('latin-1')}'"
            )
        expected = configured_token()
        if expected and hmac.compare_digest(credentials, expected.encode()):
            return active(service_user()), ServiceToken()
        token = Token.objects.select_related("user").filter(key=credentials.decode("latin-1")).first()
        if token is None:
            raise exceptions.AuthenticationFailed(INVALID_TOKEN)
        return active(token.user), token

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="workflows"'


def active(user: AbstractBaseUser) -> AbstractBaseUser:
    """The token's user, or 401 when an operator has deactivated it."""
    if not user.is_active:
        raise exceptions.AuthenticationFailed(
            f"the user '{user.get_username()}' of this API token is inactive"
        )
    return user


def reads_are_open() -> bool:
    return not conf().api_reads_require_auth


def require(request: Request, needed: str, *alternatives: str) -> bool:
    """True when the request's user has the permission (or one of its alternatives); 401 without a
    user, 403 without it."""
    user = request.user
    if user is None:
        raise exceptions.NotAuthenticated(
            f"{request.method} {request.path} needs credentials: send 'Authorization: Token <token>' "
            "(a user's API token or the service token), or sign in"
        )
    if not any(user.has_perm(permission) for permission in (needed, *alternatives)):
        also = "".join(f" (or '{permission}')" for permission in alternatives)
        raise exceptions.PermissionDenied(
            f"{request.method} {request.path} needs the permission '{needed}'{also}, "
            f"which '{user.get_username()}' does not have"
        )
    return True


class FormWithoutCredentials(exceptions.APIException):
    """415 for an anonymous write in a media type any page can send (not DRF's UnsupportedMediaType,
    whose message lists the types this route parses)."""

    status_code = 415
    default_code = "unsupported_media_type"


def not_forgeable(request: Request) -> bool:
    """True for an anonymous write no page on another site can have sent through a visitor's
    browser, else 415 or 403: such a page can send forms (and text/plain) without asking the server
    first, and browsers name its origin. Session writes are checked by CSRF instead."""
    media_type = request.content_type.partition(";")[0].strip().lower()
    if media_type in BROWSER_FORM_TYPES:
        raise FormWithoutCredentials(
            f"an anonymous write may not send media type '{media_type}', which a page on another site "
            "can send too: send application/json, or sign in and send the CSRF token",
        )
    if cross_site(request):
        raise exceptions.PermissionDenied(
            f"{request.method} {request.path} without credentials comes from a page on another site "
            f"(Origin {request.headers.get('Origin')!r}): anonymous writes are refused from browsers there"
        )
    return True


def cross_site(request: Request) -> bool:
    """What the browser says about where the request comes from: Sec-Fetch-Site, else Origin."""
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        return fetch_site not in {"same-origin", "none"}
    origin = request.headers.get("Origin")
    return origin is not None and origin != f"{request.scheme}://{request.get_host()}"


class ExecutionPermissions(BasePermission):
    """Model permissions on executions, as the admin checks them: `view_execution` or
    `change_execution` for GET, HEAD and OPTIONS (the admin shows executions to either), the view's
    `write_permission` (default `change_execution`) for other methods.

    Anonymous requests (`request.user` is None) may read while reads are open and write while
    anonymous writes are allowed, if not forgeable from another site; a signed-in user is held to
    their permissions, reads included.
    """

    def has_permission(self, request: Request, view: Any) -> bool:
        reading = request.method in SAFE_METHODS
        anonymous = request.user is None
        if reading and anonymous and reads_are_open():
            return True
        if not reading and anonymous and settings.WORKFLOWS_ALLOW_ANONYMOUS_WRITES:
            return not_forgeable(request)
        if reading:
            return require(request, VIEW, CHANGE)
        return require(request, getattr(view, "write_permission", CHANGE))


class MetricsPermissions(BasePermission):
    """`/metrics` for anyone, or, with WORKFLOWS_METRICS_REQUIRE_AUTH on, for users who may read
    executions (the scraper sends a token)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        return not conf().metrics_require_auth or require(request, VIEW, CHANGE)


class WriteRateThrottle(SimpleRateThrottle):
    """Writes per user at WORKFLOWS_API_WRITE_RATE, counted in Django's cache (Redis, so every API
    process shares the count). Reads and anonymous writes (a development convenience) are not
    counted; while the cache is unreachable, writes pass rather than fail."""

    scope = "write"

    def get_rate(self) -> str:
        return conf().api_write_rate

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if request.method in SAFE_METHODS or request.user is None:
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}

    def allow_request(self, request: Request, view: Any) -> bool:
        try:
            return super().allow_request(request, view)
        except (RedisError, ConnectionInterrupted) as exc:
            logger.warning("write throttle skipped: the cache is unreachable (%s)", exc)
            return True


class TokenScheme(OpenApiAuthenticationExtension):
    """Describes TokenAuthentication in the OpenAPI schema as an HTTP bearer scheme."""

    target_class = TokenAuthentication
    name = "apiToken"
    priority = 1

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer"}

    def get_security_requirement(self, auto_schema: Any) -> dict[str, list[str]] | list[dict[str, list[str]]]:
        """While reads are open, GET needs no credentials (`{}`); writes need a token or the session."""
        requirement: dict[str, list[str]] = {self.name: []}
        open_read = auto_schema.method in SAFE_METHODS and reads_are_open()
        return [requirement, {}] if open_read else requirement
