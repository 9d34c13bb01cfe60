"""The settings per environment: DJANGO_ENV picks the module, production fails closed and passes
`manage.py check --deploy` (each settings import runs in a fresh interpreter)."""

import subprocess
import sys

import pytest

from tests.production_env import PRODUCTION, run_in_production


def setting(name: str, **overrides: str | None) -> subprocess.CompletedProcess[str]:
    code = f"from django.conf import settings; print(repr(settings.{name}))"
    return run_in_production([sys.executable, "-c", code], **overrides)


def test_check_deploy_passes_with_a_complete_production_environment() -> None:
    result = run_in_production([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"])

    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"DATABASE_URL": None}, "needs DATABASE_URL"),
        ({"DATABASE_URL": " "}, "needs DATABASE_URL"),
        ({"SECRET_KEY": None}, "needs SECRET_KEY"),
        ({"SECRET_KEY": "x" * 49 + "y"}, "needs SECRET_KEY set to a real secret (50+ characters)"),
        ({"WORKFLOW_SIGNING_KEY": None}, "needs WORKFLOW_SIGNING_KEY"),
        ({"WORKFLOW_SIGNING_KEY": "x" * 31}, "needs WORKFLOW_SIGNING_KEY set to a real secret"),
        ({"WORKFLOW_SIGNING_KEY": "dev-only-insecure-signing-key-change-me"}, "needs WORKFLOW_SIGNING_KEY"),
        ({"SECRET_KEY": "change-me-in-production-change-me-in-production-change-me"}, "needs SECRET_KEY"),
        ({"ALLOWED_HOSTS": None}, "needs ALLOWED_HOSTS"),
        ({"ALLOWED_HOSTS": "*"}, "needs ALLOWED_HOSTS"),
        ({"ALLOWED_HOSTS": "api.example.com,*"}, "needs ALLOWED_HOSTS"),
        ({"DEBUG": "true"}, "refuses DEBUG=true"),
    ],
)
def test_production_refuses_to_start_naming_what_is_missing(
    overrides: dict[str, str | None], message: str
) -> None:
    result = setting("DEBUG", **overrides)

    assert result.returncode != 0, result.stdout
    assert "ImproperlyConfigured: DJANGO_ENV=production refuses to start" in result.stderr
    assert message in result.stderr


def test_production_names_every_problem_at_once() -> None:
    result = setting("DEBUG", DATABASE_URL=None, SECRET_KEY=None, ALLOWED_HOSTS="*")

    assert result.returncode != 0, result.stdout
    for name in ("DATABASE_URL", "SECRET_KEY", "ALLOWED_HOSTS"):
        assert f"needs {name}" in result.stderr


def test_production_trusts_the_proxy_header_it_is_given_and_no_other() -> None:
    assert setting("SECURE_PROXY_SSL_HEADER").stdout.strip() == "None"
    given = setting("SECURE_PROXY_SSL_HEADER", SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto")
    assert given.stdout.strip() == "('HTTP_X_FORWARDED_PROTO', 'https')", given.stderr


@pytest.mark.parametrize(("environment", "hosts"), [("development", "testserver"), ("test", "testserver")])
def test_other_environments_start_without_production_variables(environment: str, hosts: str) -> None:
    missing = dict.fromkeys(PRODUCTION, None)
    result = setting("ALLOWED_HOSTS", **{**missing, "DJANGO_ENV": environment})

    assert result.returncode == 0, result.stderr
    assert hosts in result.stdout


def test_an_unknown_environment_is_refused_by_name() -> None:
    result = setting("DEBUG", DJANGO_ENV="staging")

    assert result.returncode != 0
    assert "DJANGO_ENV='staging' is not one of development, test, production" in result.stderr


def test_a_rediss_url_gives_celery_and_the_cache_the_ca() -> None:
    code = (
        "import django; django.setup(); from django.conf import settings; "
        "from workflowsite.celery import app; "
        "print(app.conf.broker_use_ssl['ssl_ca_certs'], "
        "settings.CACHES['default']['OPTIONS']['CONNECTION_POOL_KWARGS']['ssl_ca_certs'], "
        "app.conf.redis_backend_use_ssl)"
    )
    result = run_in_production(
        [sys.executable, "-c", code],
        DJANGO_ENV="development",
        REDIS_URL="rediss://:pa55@redis.example.com:6380/0",
        REDIS_SSL_CA_FILE="/etc/ca.pem",
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["/etc/ca.pem", "/etc/ca.pem", "None"]


def test_production_redirects_plain_http_except_the_healthcheck() -> None:
    code = (
        "import django; django.setup(); from django.test import Client; client = Client(); "
        "print(client.get('/schema', HTTP_HOST='api.example.com').status_code, "
        "client.get('/health', HTTP_HOST='api.example.com').status_code, "
        "client.get('/schema', HTTP_HOST='api.example.com', HTTP_X_FORWARDED_PROTO='https').status_code)"
    )

    result = run_in_production([sys.executable, "-c", code], SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto")

    assert result.returncode == 0, result.stderr
    redirected, health, proxied = result.stdout.split()[-3:]
    assert redirected == "301"
    assert health in {"200", "503"}  # answered: container healthchecks call it over plain HTTP
    assert proxied == "200"  # the proxy said the request came over HTTPS
