"""Tests for workflows.api.auth: reads are open; writes need the API token or a staff session once a
token is configured; production refuses to start without one (or an explicit opt-out)."""

import hmac
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.contrib.auth.models import User
from django.test import Client

from workflows.models import Execution

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "t0ken-for-tests-0123456789abcdef"
WORKFLOW = {"name": "auth", "dag": {"nodes": [{"id": "A", "handler": "input"}]}}
WRITE_ROUTES = [
    "/workflows/00000000-0000-0000-0000-000000000000/trigger",
    "/workflow/trigger/00000000-0000-0000-0000-000000000000",
    "/workflows/00000000-0000-0000-0000-000000000000/cancel",
    "/workflows/00000000-0000-0000-0000-000000000000/retry",
]


@pytest.fixture
def token(settings: Any) -> str:
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


def staff(client: Client, *, is_staff: bool = True) -> User:
    user = User.objects.create_user("ops", password="x", is_staff=is_staff)
    client.force_login(user)
    return user


# --- no token configured: the original engine's open API -----------------------------------------


def test_without_a_token_writes_are_open(client: Client, settings: Any) -> None:
    settings.WORKFLOWS_API_TOKEN = ""

    assert submit(client).status_code == 201


def test_without_a_token_any_authorization_header_is_ignored(client: Client, settings: Any) -> None:
    settings.WORKFLOWS_API_TOKEN = ""

    assert submit(client, HTTP_AUTHORIZATION="Bearer whatever").status_code == 201


# --- a token configured ---------------------------------------------------------------------------


def test_reads_stay_open(client: Client, token: str) -> None:
    assert client.get("/workflows").status_code == 200
    assert client.get("/schema").status_code == 200
    error_of(client.get("/workflows/not-a-uuid"), 404)


def test_write_without_credentials_is_401_naming_the_header(client: Client, token: str) -> None:
    response = submit(client)

    error = error_of(response, 401)
    assert error["code"] == "not_authenticated"
    assert error["detail"] == "POST needs the API token: send 'Authorization: Bearer <token>'"
    assert response["WWW-Authenticate"] == 'Bearer realm="workflows"'
    assert not Execution.objects.exists()


@pytest.mark.parametrize("route", WRITE_ROUTES)
def test_every_write_route_needs_the_token(client: Client, token: str, route: str) -> None:
    error_of(client.post(route), 401)
    error_of(client.post(route, HTTP_AUTHORIZATION=f"Bearer {token}"), 404)


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_other_unsafe_methods_need_the_token_before_anything_else(
    client: Client, token: str, method: str
) -> None:
    error_of(getattr(client, method)("/workflows"), 401)
    error_of(getattr(client, method)("/workflows", HTTP_AUTHORIZATION=f"Bearer {token}"), 405)


@pytest.mark.parametrize(
    "header", [f"Bearer {TOKEN}", f"bearer {TOKEN}", f"Token {TOKEN}", f"BEARER  {TOKEN} "]
)
def test_the_token_grants_writes(client: Client, token: str, header: str) -> None:
    assert submit(client, HTTP_AUTHORIZATION=header).status_code == 201


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


@pytest.mark.parametrize("header", ["Basic b3BzOng=", "Digest x", "", "NotAScheme"])
def test_other_schemes_count_as_no_credentials(client: Client, token: str, header: str) -> None:
    error = error_of(submit(client, HTTP_AUTHORIZATION=header), 401)

    assert error["code"] == "not_authenticated"


def test_tokens_are_compared_in_constant_time(client: Client, token: str) -> None:
    with mock.patch("workflows.api.auth.hmac.compare_digest", wraps=hmac.compare_digest) as compare:
        submit(client, HTTP_AUTHORIZATION="Bearer guess")

    compare.assert_called_once_with(b"guess", TOKEN.encode())


def test_the_token_is_read_at_request_time(client: Client, settings: Any) -> None:
    settings.WORKFLOWS_API_TOKEN = "first-token"
    assert submit(client, HTTP_AUTHORIZATION="Bearer first-token").status_code == 201

    settings.WORKFLOWS_API_TOKEN = "second-token"
    error_of(submit(client, HTTP_AUTHORIZATION="Bearer first-token"), 401)
    assert submit(client, HTTP_AUTHORIZATION="Bearer second-token").status_code == 201


# --- staff sessions (the browsable API after logging into the admin) ----------------------------


def test_a_staff_session_may_write(client: Client, token: str) -> None:
    staff(client)

    assert submit(client).status_code == 201


def test_a_session_that_is_not_staff_is_403(client: Client, token: str) -> None:
    staff(client, is_staff=False)

    error = error_of(submit(client), 403)
    assert error["detail"] == "POST needs the API token or a staff account; 'ops' is not staff"


def test_a_staff_session_still_needs_the_csrf_token(token: str) -> None:
    client = Client(enforce_csrf_checks=True)
    staff(client)

    error = error_of(submit(client), 403)
    assert "CSRF" in error["detail"]
    assert submit(client, HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 201


def test_an_inactive_staff_user_counts_as_anonymous(client: Client, token: str) -> None:
    user = staff(client)
    user.is_active = False
    user.save()

    error_of(submit(client), 401)


# --- the schema says so -----------------------------------------------------------------------------


def test_schema_documents_open_reads_and_token_writes(client: Client) -> None:
    schema = json.loads(client.get("/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json").content)

    assert schema["components"]["securitySchemes"]["apiToken"] == {"type": "http", "scheme": "bearer"}
    assert {} in schema["paths"]["/workflows"]["get"]["security"]
    assert {} not in schema["paths"]["/workflows"]["post"]["security"]
    assert {"apiToken": []} in schema["paths"]["/workflows"]["post"]["security"]


# --- production fails closed --------------------------------------------------------------------------

PRODUCTION_READY = {
    "DJANGO_ENV": "production",
    "SECRET_KEY": "a-real-secret-of-more-than-thirty-two-characters-0123456789",
    "ALLOWED_HOSTS": "api.example.com",
    "WORKFLOWS_API_TOKEN": TOKEN,
    "DATABASE_URL": "postgres://workflows:workflows@127.0.0.1:5432/workflows",
    "WORKFLOW_SIGNING_KEY": "another-real-secret-of-more-than-thirty-two-characters",
}
SETTINGS_VARIABLES = {
    *PRODUCTION_READY,
    "DEBUG",
    "WORKFLOWS_ALLOW_ANONYMOUS_WRITES",
    "DJANGO_SETTINGS_MODULE",
}


def load_settings(**overrides: str | None) -> subprocess.CompletedProcess[str]:
    """Import the settings in a fresh interpreter, with the production variables changed by `overrides`
    (None removes one)."""
    env = {name: value for name, value in os.environ.items() if name not in SETTINGS_VARIABLES}
    for name, value in {**PRODUCTION_READY, **overrides}.items():
        if value is not None:
            env[name] = value
    env["DJANGO_SETTINGS_MODULE"] = "workflowsite.settings"
    code = "from django.conf import settings; print(settings.WORKFLOWS_API_TOKEN != '', settings.DEBUG)"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"SECRET_KEY": None}, "needs SECRET_KEY"),
        ({"SECRET_KEY": "short"}, "needs SECRET_KEY"),
        ({"SECRET_KEY": "change-me-in-production-change-me-in-production"}, "needs SECRET_KEY"),
        ({"DEBUG": "true"}, "refuses DEBUG=true"),
        ({"ALLOWED_HOSTS": None}, "needs ALLOWED_HOSTS"),
        ({"WORKFLOW_SIGNING_KEY": None}, "needs WORKFLOW_SIGNING_KEY"),
        ({"WORKFLOW_SIGNING_KEY": "dev-only-insecure-signing-key-change-me"}, "needs WORKFLOW_SIGNING_KEY"),
        ({"WORKFLOWS_API_TOKEN": None}, "needs WORKFLOWS_API_TOKEN"),
        ({"WORKFLOWS_API_TOKEN": "  "}, "needs WORKFLOWS_API_TOKEN"),
        (
            {"WORKFLOWS_API_TOKEN": None, "WORKFLOWS_ALLOW_ANONYMOUS_WRITES": "false"},
            "needs WORKFLOWS_API_TOKEN",
        ),
    ],
)
def test_production_refuses_to_start_without_what_it_needs(
    overrides: dict[str, str | None], message: str
) -> None:
    result = load_settings(**overrides)

    assert result.returncode != 0, result.stdout
    assert "django.core.exceptions.ImproperlyConfigured" in result.stderr
    assert message in result.stderr


def test_production_starts_with_a_token() -> None:
    result = load_settings()

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "False"]


def test_production_may_allow_anonymous_writes_explicitly() -> None:
    result = load_settings(WORKFLOWS_API_TOKEN=None, WORKFLOWS_ALLOW_ANONYMOUS_WRITES="true")

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]


def test_development_needs_no_token() -> None:
    result = load_settings(DJANGO_ENV="development", WORKFLOWS_API_TOKEN=None, SECRET_KEY=None, DEBUG="true")

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True"]
