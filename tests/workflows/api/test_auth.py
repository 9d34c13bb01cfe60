"""Tests for workflows.api.auth: users' tokens, the service token and sessions, held to the model
permissions the admin applies; reads closed when configured; production's defaults."""

import hmac
import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from io import StringIO
from typing import Any
from unittest import mock

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token

from devtools.devstack import TEST_REDIS_DB
from tests.production_env import run_in_production
from workflows import services
from workflows.api.auth import SERVICE_USERNAME
from workflows.conf import conf
from workflows.models import Execution, ExecutionStatus

pytestmark = pytest.mark.django_db

TOKEN = "t0ken-for-tests-0123456789abcdef"
WORKFLOW = {"name": "auth", "dag": {"nodes": [{"id": "A", "handler": "input"}]}}
NO_ID = "00000000-0000-0000-0000-000000000000"
WRITE_ROUTES = [
    f"/workflows/{NO_ID}/trigger",
    f"/workflow/trigger/{NO_ID}",
    f"/workflows/{NO_ID}/cancel",
    f"/workflows/{NO_ID}/retry",
]
CHANGELIST = reverse("admin:workflows_execution_changelist")


@pytest.fixture(autouse=True)
def fresh_conf(test_redis: None) -> Iterator[None]:
    """Tests change WORKFLOWS, which conf() reads once per process."""
    conf.cache_clear()
    yield
    conf.cache_clear()


@pytest.fixture
def closed(settings: Any) -> None:
    """No anonymous writes (production's default, or development with a service token)."""
    settings.WORKFLOWS_ALLOW_ANONYMOUS_WRITES = False


@pytest.fixture
def reads_closed(settings: Any, closed: None) -> None:
    settings.WORKFLOWS = {**settings.WORKFLOWS, "API_READS_REQUIRE_AUTH": True}
    conf.cache_clear()


@pytest.fixture
def token(settings: Any, closed: None) -> str:
    settings.WORKFLOWS_API_TOKEN = TOKEN
    return TOKEN


def submit(client: Client, **headers: str) -> Any:
    return client.post("/workflows", json.dumps(WORKFLOW), content_type="application/json", **headers)


def error_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"].startswith("application/json")
    body = json.loads(response.content)
    assert set(body) == {"detail", "code", "errors"}, body
    return body


def user_with(username: str, *codenames: str, is_staff: bool = False) -> User:
    user = User.objects.create_user(username, password="unused-password", is_staff=is_staff)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    return user


def bearer(user: User) -> dict[str, str]:
    """The Authorization header of a token of this user's own."""
    return {"HTTP_AUTHORIZATION": f"Token {Token.objects.get_or_create(user=user)[0].key}"}


def signed_in(user: User, **kwargs: Any) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def pending() -> Execution:
    return services.workflow_submit(data=WORKFLOW)


# --- development's defaults: the README's curl walk-through -------------------------------------


def test_in_development_anonymous_requests_read_and_write(client: Client) -> None:
    execution_id = submit(client).json()["execution_id"]

    assert (
        client.post(f"/workflows/{execution_id}/trigger", content_type="application/json").status_code == 200
    )
    assert client.get(f"/workflows/{execution_id}").status_code == 200
    assert client.get("/workflows").status_code == 200


def test_in_development_a_signed_in_user_is_still_held_to_their_permissions(client: Client) -> None:
    error = error_of(submit(client, **bearer(user_with("reader", "view_execution"))), 403)

    assert error["detail"] == (
        "POST /workflows needs the permission 'workflows.add_execution', which 'reader' does not have"
    )


# --- no anonymous writes -----------------------------------------------------------------------------


def test_write_without_credentials_is_401_naming_the_header(client: Client, closed: None) -> None:
    response = submit(client)

    error = error_of(response, 401)
    assert error["code"] == "not_authenticated"
    assert "send 'Authorization: Token <token>'" in error["detail"]
    assert response["WWW-Authenticate"] == 'Bearer realm="workflows"'
    assert not Execution.objects.exists()


@pytest.mark.parametrize("route", WRITE_ROUTES)
def test_every_write_route_needs_credentials(client: Client, token: str, route: str) -> None:
    error_of(client.post(route), 401)
    error_of(client.post(route, HTTP_AUTHORIZATION=f"Bearer {token}"), 404)


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_other_unsafe_methods_need_credentials_before_anything_else(
    client: Client, token: str, method: str
) -> None:
    error_of(getattr(client, method)("/workflows"), 401)
    error_of(getattr(client, method)("/workflows", HTTP_AUTHORIZATION=f"Bearer {token}"), 405)


# --- the shared service token ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header", [f"Bearer {TOKEN}", f"bearer {TOKEN}", f"Token {TOKEN}", f"BEARER  {TOKEN} "]
)
def test_the_service_token_grants_writes(client: Client, token: str, header: str) -> None:
    assert submit(client, HTTP_AUTHORIZATION=header).status_code == 201


def test_the_service_token_acts_as_a_service_user_who_may_not_delete_or_sign_in(
    client: Client, token: str
) -> None:
    assert submit(client, HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 201

    service = User.objects.get(username=SERVICE_USERNAME)
    assert not service.has_usable_password()
    assert not (service.is_staff or service.is_superuser)
    assert service.get_all_permissions() == {
        "workflows.view_execution",
        "workflows.add_execution",
        "workflows.change_execution",
        "workflows.view_workflowdefinition",
    }


def test_an_operator_may_take_permissions_from_the_service_user(client: Client, token: str) -> None:
    execution_id = submit(client, HTTP_AUTHORIZATION=f"Bearer {token}").json()["execution_id"]
    service = User.objects.get(username=SERVICE_USERNAME)
    service.user_permissions.remove(Permission.objects.get(codename="change_execution"))

    error_of(client.post(f"/workflows/{execution_id}/trigger", HTTP_AUTHORIZATION=f"Bearer {token}"), 403)
    service.is_active = False
    service.save()
    error = error_of(submit(client, HTTP_AUTHORIZATION=f"Bearer {token}"), 401)
    assert error["detail"] == f"the user '{SERVICE_USERNAME}' of this API token is inactive"


@pytest.mark.parametrize(
    ("header", "words"),
    [
        ("Bearer wrong", "the API token in the Authorization header is not valid"),
        (f"Bearer {TOKEN}x", "is not valid"),
        (f"Bearer {TOKEN[:-1]}", "is not valid"),
        (f"Token {TOKEN.upper()}", "is not valid"),
        ("Bearer", "has no token after 'Bearer'"),
        ("Bearer    ", "has no token after 'Bearer'"),
        ("Bearer ☃", "not ISO-8859-1 text"),
        ("Bearer tökén", "is not valid"),
    ],
)
def test_a_wrong_token_is_401_on_writes_and_reads(
    client: Client, token: str, header: str, words: str
) -> None:
    for response in (
        submit(client, HTTP_AUTHORIZATION=header),
        client.get("/workflows", HTTP_AUTHORIZATION=header),
    ):
        error = error_of(response, 401)
        assert error["code"] == "authentication_failed"
        assert words in error["detail"]


def test_without_a_service_token_an_unknown_token_is_still_refused(client: Client) -> None:
    error = error_of(submit(client, HTTP_AUTHORIZATION="Bearer whatever"), 401)

    assert error["detail"] == "the API token in the Authorization header is not valid"


@pytest.mark.parametrize("header", ["Basic b3BzOng=", "Digest x", "", "NotAScheme"])
def test_other_schemes_count_as_no_credentials(client: Client, token: str, header: str) -> None:
    error = error_of(submit(client, HTTP_AUTHORIZATION=header), 401)

    assert error["code"] == "not_authenticated"


def test_the_service_token_is_compared_in_constant_time(client: Client, token: str) -> None:
    with mock.patch("workflows.api.auth.hmac.compare_digest", wraps=hmac.compare_digest) as compare:
        submit(client, HTTP_AUTHORIZATION="Bearer guess")

    compare.assert_called_once_with(b"guess", TOKEN.encode())


def test_the_service_token_is_read_at_request_time(client: Client, settings: Any, closed: None) -> None:
    settings.WORKFLOWS_API_TOKEN = "first-token"
    assert submit(client, HTTP_AUTHORIZATION="Bearer first-token").status_code == 201

    settings.WORKFLOWS_API_TOKEN = "second-token"
    error_of(submit(client, HTTP_AUTHORIZATION="Bearer first-token"), 401)
    assert submit(client, HTTP_AUTHORIZATION="Bearer second-token").status_code == 201


# --- users' tokens and the model permissions --------------------------------------------------------

ROLES = {
    "nobody": (),
    "viewer": ("view_execution",),
    "submitter": ("view_execution", "add_execution"),
    "operator": ("view_execution", "change_execution"),
}
READS = ["", "/events", "/results"]


@pytest.mark.parametrize("role", [*ROLES, "superuser"])
def test_each_role_may_do_what_its_permissions_say_through_its_token(
    client: Client, reads_closed: None, role: str
) -> None:
    if role == "superuser":
        user = User.objects.create_superuser("root", password="unused-password")
        granted = {"view_execution", "add_execution", "change_execution"}
    else:
        user = user_with(role, *ROLES[role])
        granted = set(ROLES[role])
    headers = bearer(user)
    execution = pending()

    def allowed(response: Any, permission: str) -> bool:
        if permission in granted:
            assert response.status_code not in {401, 403}, response.content[:300]
            return True
        error = error_of(response, 403)
        assert f"needs the permission 'workflows.{permission}'" in error["detail"]
        assert f"which '{user.username}' does not have" in error["detail"]
        return False

    allowed(client.get("/workflows", **headers), "view_execution")
    for path in READS:
        allowed(client.get(f"/workflows/{execution.pk}{path}", **headers), "view_execution")
    submitted = allowed(submit(client, **headers), "add_execution")
    assert Execution.objects.count() == (2 if submitted else 1)
    triggered = allowed(client.post(f"/workflows/{execution.pk}/trigger", **headers), "change_execution")
    execution.refresh_from_db()
    assert execution.status == (ExecutionStatus.RUNNING if triggered else ExecutionStatus.PENDING)
    allowed(client.post(f"/workflows/{execution.pk}/cancel", **headers), "change_execution")
    allowed(client.post(f"/workflows/{execution.pk}/retry", **headers), "change_execution")


def test_drf_create_token_makes_a_token_the_api_accepts(client: Client, reads_closed: None) -> None:
    user_with("alice", "view_execution")
    out = StringIO()

    call_command("drf_create_token", "alice", stdout=out)

    key = re.search(r"\b([0-9a-f]{40})\b", out.getvalue()).group(1)
    assert client.get("/workflows", HTTP_AUTHORIZATION=f"Token {key}").status_code == 200
    error_of(client.get("/workflows"), 401)


def test_tokens_are_managed_in_the_admin(admin_client: Client) -> None:
    user_with("alice")

    page = admin_client.get(reverse("admin:authtoken_tokenproxy_changelist"))
    assert page.status_code == 200
    assert admin_client.get(reverse("admin:authtoken_tokenproxy_add")).status_code == 200


def test_only_superusers_see_tokens_in_the_admin() -> None:
    staff = user_with("staff", "view_token", "view_tokenproxy", "change_token", is_staff=True)
    Token.objects.create(user=User.objects.create_superuser("root", password="unused-password"))

    assert signed_in(staff).get(reverse("admin:authtoken_tokenproxy_changelist")).status_code == 403
    assert "Auth Token" not in signed_in(staff).get(reverse("admin:index")).content.decode()


def test_an_inactive_users_token_is_401(client: Client, closed: None) -> None:
    user = user_with("gone", "add_execution")
    headers = bearer(user)
    user.is_active = False
    user.save()

    error = error_of(submit(client, **headers), 401)
    assert error["detail"] == "the user 'gone' of this API token is inactive"


# --- sessions: one rule for the API and the admin ----------------------------------------------------


def admin_action(client: Client, action: str, execution: Execution) -> None:
    client.post(CHANGELIST, {"action": action, "_selected_action": [str(execution.pk)], "index": 0})


@pytest.mark.parametrize("action", ["trigger", "cancel"])
def test_a_staff_session_without_change_execution_is_refused_by_the_api_as_by_the_admin(
    closed: None, action: str
) -> None:
    viewer = signed_in(user_with("viewer", "view_execution", is_staff=True))
    execution = pending()

    admin_action(viewer, action, execution)
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.PENDING
    error = error_of(viewer.post(f"/workflows/{execution.pk}/{action}"), 403)
    assert "needs the permission 'workflows.change_execution', which 'viewer'" in error["detail"]
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.PENDING


def test_a_staff_session_with_change_execution_may_act_through_both(closed: None) -> None:
    operator = signed_in(user_with("operator", "view_execution", "change_execution", is_staff=True))
    through_admin, through_api = pending(), pending()

    admin_action(operator, "trigger", through_admin)
    assert operator.post(f"/workflows/{through_api.pk}/trigger").status_code == 200
    for execution in (through_admin, through_api):
        execution.refresh_from_db()
        assert execution.status == ExecutionStatus.RUNNING


def test_a_user_who_is_not_staff_signs_in_to_the_browsable_api(reads_closed: None) -> None:
    user_with("bea", "view_execution")
    client = Client()
    assert "Log in" in client.get("/workflows", HTTP_ACCEPT="text/html").content.decode()

    signed = client.post("/api-auth/login/", {"username": "bea", "password": "unused-password"})

    assert (signed.status_code, signed["Location"]) == (302, "/workflows")
    assert client.get("/workflows").status_code == 200
    error_of(client.post("/workflows", json.dumps(WORKFLOW), content_type="application/json"), 403)


def test_an_inactive_users_session_counts_as_anonymous(closed: None) -> None:
    user = user_with("ops", "add_execution", is_staff=True)
    client = signed_in(user)
    user.is_active = False
    user.save()

    error_of(submit(client), 401)


# --- CSRF: no page on another site writes through a visitor's browser ------------------------------

EVIL = {"HTTP_ORIGIN": "https://evil.example"}
FORM = {"name": "From the form", "dag": json.dumps(WORKFLOW["dag"])}


def csrf_client(user: User) -> tuple[Client, str]:
    """A browser signed in as `user`, enforcing CSRF, and the token a page of ours gave it."""
    client = signed_in(user, enforce_csrf_checks=True)
    client.get("/workflows", HTTP_ACCEPT="text/html")
    return client, client.cookies["csrftoken"].value


def test_a_session_write_needs_the_csrf_token(closed: None) -> None:
    client, csrf_token = csrf_client(user_with("alice", "add_execution", "change_execution"))
    execution = pending()

    for refused in (
        client.post("/workflows", FORM, **EVIL),
        client.post("/workflows", FORM),
        client.post(f"/workflows/{execution.pk}/trigger", **EVIL),
    ):
        assert "CSRF" in error_of(refused, 403)["detail"]
    assert Execution.objects.count() == 1
    stolen = client.post("/workflows", {**FORM, "csrfmiddlewaretoken": csrf_token}, **EVIL)
    assert "CSRF" in error_of(stolen, 403)["detail"]

    ours = {"HTTP_ORIGIN": "http://testserver"}
    assert client.post("/workflows", {**FORM, "csrfmiddlewaretoken": csrf_token}, **ours).status_code == 201
    trigger = client.post(f"/workflows/{execution.pk}/trigger", HTTP_X_CSRFTOKEN=csrf_token, **ours)
    assert trigger.status_code == 200


def test_a_token_needs_no_csrf_token(token: str) -> None:
    client = Client(enforce_csrf_checks=True)

    assert client.post("/workflows", FORM, HTTP_AUTHORIZATION=f"Token {token}").status_code == 201


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain"]
)
def test_anonymous_writes_refuse_what_a_form_on_another_site_can_send(
    client: Client, content_type: str
) -> None:
    execution = pending()

    for response in (  # the test client sends no Content-Type without a body; browsers do
        client.post("/workflows", b"name=x", content_type=content_type),
        client.post(f"/workflows/{execution.pk}/trigger", b"a=1", content_type=content_type),
    ):
        error = error_of(response, 415)
        assert error["detail"].startswith(
            f"an anonymous write may not send media type '{content_type.partition(';')[0]}'"
        )
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.PENDING
    assert Execution.objects.count() == 1


@pytest.mark.parametrize(
    "headers", [EVIL, {"HTTP_SEC_FETCH_SITE": "cross-site"}, {"HTTP_SEC_FETCH_SITE": "same-site", **EVIL}]
)
def test_anonymous_writes_are_refused_from_pages_on_other_sites(
    client: Client, headers: dict[str, str]
) -> None:
    execution = pending()

    response = client.post(f"/workflows/{execution.pk}/trigger", content_type="application/json", **headers)

    assert "comes from a page on another site" in error_of(response, 403)["detail"]
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.PENDING


@pytest.mark.parametrize(
    "headers", [{}, {"HTTP_ORIGIN": "http://testserver"}, {"HTTP_SEC_FETCH_SITE": "same-origin", **EVIL}]
)
def test_anonymous_json_writes_from_curl_or_our_own_pages_pass(
    client: Client, headers: dict[str, str]
) -> None:
    execution = pending()

    response = client.post(f"/workflows/{execution.pk}/trigger", content_type="application/json", **headers)

    assert response.status_code == 200, response.content


# --- throttling of writes per user ------------------------------------------------------------------


@pytest.fixture
def write_rate(settings: Any) -> str:
    """Two writes a minute, counted in the tests' Redis under a prefix of this test's own."""
    settings.WORKFLOWS = {**settings.WORKFLOWS, "API_WRITE_RATE": "2/min"}
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:6379/{TEST_REDIS_DB}",
            "KEY_PREFIX": f"test-throttle-{uuid.uuid4().hex}",
        }
    }
    conf.cache_clear()
    return "2/min"


def test_writes_past_the_rate_are_429_per_user_and_reads_are_not_counted(
    client: Client, write_rate: str
) -> None:
    alice, bob = (
        bearer(user_with("alice", *ROLES["submitter"])),
        bearer(user_with("bob", *ROLES["submitter"])),
    )

    assert [submit(client, **alice).status_code for _ in range(2)] == [201, 201]
    assert all(client.get("/workflows", **alice).status_code == 200 for _ in range(3))
    response = submit(client, **alice)

    error = error_of(response, 429)
    assert error["code"] == "throttled"
    assert "throttled" in error["detail"]
    assert int(response["Retry-After"]) > 0
    assert submit(client, **bob).status_code == 201
    assert Execution.objects.count() == 3


def test_anonymous_writes_are_not_throttled(client: Client, write_rate: str) -> None:
    assert [submit(client).status_code for _ in range(3)] == [201, 201, 201]


def test_writes_pass_while_the_throttles_cache_is_unreachable(client: Client, settings: Any) -> None:
    settings.WORKFLOWS = {**settings.WORKFLOWS, "API_WRITE_RATE": "1/min"}
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
        }
    }
    conf.cache_clear()
    alice = bearer(user_with("alice", *ROLES["submitter"]))

    assert [submit(client, **alice).status_code for _ in range(2)] == [201, 201]


# --- reads ----------------------------------------------------------------------------------------------


def test_reads_closed_need_credentials_and_health_stays_open(client: Client, reads_closed: None) -> None:
    execution = pending()

    for path in ["/workflows", f"/workflows/{execution.pk}", f"/workflows/{execution.pk}/events"]:
        error = error_of(client.get(path), 401)
        assert f"GET {path} needs credentials" in error["detail"]
    assert client.get("/health").status_code in {200, 503}
    assert (
        client.get(f"/workflows/{execution.pk}", **bearer(user_with("v", "view_execution"))).status_code
        == 200
    )


def test_health_ignores_credentials_even_a_wrong_token(client: Client, reads_closed: None) -> None:
    assert client.get("/health", HTTP_AUTHORIZATION="Token not-a-token").status_code in {200, 503}


def test_open_reads_still_hold_a_signed_in_user_to_their_permissions(client: Client) -> None:
    execution = pending()

    error = error_of(client.get(f"/workflows/{execution.pk}", **bearer(user_with("nobody"))), 403)
    assert (
        "needs the permission 'workflows.view_execution' (or 'workflows.change_execution')" in error["detail"]
    )
    assert client.get(f"/workflows/{execution.pk}").status_code == 200  # anonymous: reads are open


def test_a_user_who_may_change_executions_reads_them_as_the_admin_shows_them(reads_closed: None) -> None:
    operator = user_with("changer", "change_execution", is_staff=True)
    execution = pending()

    assert Client().get(f"/workflows/{execution.pk}", **bearer(operator)).status_code == 200
    assert signed_in(operator).get(f"/admin/workflows/execution/{execution.pk}/change/").status_code == 200


def test_open_reads_need_no_credentials(client: Client, closed: None) -> None:
    execution = pending()

    assert client.get("/workflows").status_code == 200
    assert client.get(f"/workflows/{execution.pk}").status_code == 200
    error_of(client.get("/workflows/not-a-uuid"), 404)


# --- /metrics ------------------------------------------------------------------------------------------


def test_metrics_are_open_by_default(client: Client) -> None:
    assert client.get("/metrics").status_code == 200


def test_protected_metrics_need_a_user_who_may_view_executions(client: Client, settings: Any) -> None:
    settings.WORKFLOWS = {**settings.WORKFLOWS, "METRICS_REQUIRE_AUTH": True}
    conf.cache_clear()

    error = error_of(client.get("/metrics", HTTP_ACCEPT="text/plain"), 401)
    assert error["detail"] == "GET /metrics needs credentials: send 'Authorization: Token <token>' " + (
        "(a user's API token or the service token), or sign in"
    )
    error_of(client.get("/metrics", **bearer(user_with("nobody"))), 403)
    scraped = client.get("/metrics", **bearer(user_with("scraper", "view_execution")))
    assert scraped.status_code == 200
    assert b"workflows_executions" in scraped.content


# --- the schema says so -----------------------------------------------------------------------------


def test_schema_documents_open_reads_and_token_writes(client: Client) -> None:
    schema = json.loads(client.get("/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json").content)

    assert schema["components"]["securitySchemes"]["apiToken"] == {"type": "http", "scheme": "bearer"}
    assert {} in schema["paths"]["/workflows"]["get"]["security"]
    assert {} not in schema["paths"]["/workflows"]["post"]["security"]
    assert {"apiToken": []} in schema["paths"]["/workflows"]["post"]["security"]


def test_schema_documents_closed_reads(client: Client, reads_closed: None) -> None:
    schema = json.loads(client.get("/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json").content)

    assert {} not in schema["paths"]["/workflows"]["get"]["security"]


# --- production fails closed --------------------------------------------------------------------------


def load_settings(**overrides: str | None) -> subprocess.CompletedProcess[str]:
    """Import the settings in a fresh interpreter, with the production variables changed by `overrides`
    (None removes one); it prints DEBUG, whether anonymous writes are allowed and reads need auth."""
    code = (
        "from django.conf import settings; "
        "print(settings.DEBUG, settings.WORKFLOWS_ALLOW_ANONYMOUS_WRITES, "
        "settings.WORKFLOWS['API_READS_REQUIRE_AUTH'])"
    )
    return run_in_production([sys.executable, "-c", code], **overrides)


def test_production_needs_credentials_for_reads_and_writes_by_default() -> None:
    result = load_settings()

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False", "True"]


def test_production_may_open_reads_and_writes_explicitly() -> None:
    result = load_settings(WORKFLOWS_ALLOW_ANONYMOUS_WRITES="true", WORKFLOWS_API_READS_REQUIRE_AUTH="false")

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True", "False"]


def test_development_is_open_until_a_service_token_is_set() -> None:
    result = load_settings(DJANGO_ENV="development", SECRET_KEY=None, DEBUG="true")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True", "False"]

    result = load_settings(DJANGO_ENV="development", SECRET_KEY=None, WORKFLOWS_API_TOKEN=TOKEN)
    assert result.stdout.split() == ["False", "False", "False"]
