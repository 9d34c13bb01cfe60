"""Production fails closed: no default for what must be secret or chosen, and HTTPS only. It refuses
to start, naming every missing or unsafe variable at once."""

import os

from django.core.exceptions import ImproperlyConfigured

from workflowsite.settings.base import *  # noqa: F403
from workflowsite.settings.base import (
    DEBUG,
    WORKFLOWS,
    env_bool,
    env_list,
)

MIN_SECRET_KEY_CHARS = 50  # what `check --deploy` asks for (security.W009)
MIN_SIGNING_KEY_CHARS = 32  # as workflows.conf refuses shorter ones
problems: list[str] = []


def require(name: str, what: str) -> str:
    """The variable's value; a missing or blank one is recorded as a problem."""
    value = os.environ.get(name, "").strip()
    if not value:
        problems.append(f"needs {name} ({what})")
    return value


SECRET_KEY = require("SECRET_KEY", f"a real secret of {MIN_SECRET_KEY_CHARS}+ characters")
if SECRET_KEY and (
    len(SECRET_KEY) < MIN_SECRET_KEY_CHARS
    or len(set(SECRET_KEY)) < 5
    or "change-me" in SECRET_KEY
    or SECRET_KEY.startswith("django-insecure-")
):
    problems.append(f"needs SECRET_KEY set to a real secret ({MIN_SECRET_KEY_CHARS}+ characters)")
# No silent SQLite: the database is named explicitly.
require("DATABASE_URL", "the database, e.g. postgres://user:password@host:5432/db")
# Every Kafka message and Celery task between schedulers and workers is signed with this key
# (workflows/signatures.py).
SIGNING_KEY = require("WORKFLOW_SIGNING_KEY", "the key reports and tasks are signed with")
if SIGNING_KEY and (len(SIGNING_KEY) < MIN_SIGNING_KEY_CHARS or "change-me" in SIGNING_KEY):
    problems.append(f"needs WORKFLOW_SIGNING_KEY set to a real secret ({MIN_SIGNING_KEY_CHARS}+ characters)")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "")
if not ALLOWED_HOSTS or "*" in ALLOWED_HOSTS:
    problems.append("needs ALLOWED_HOSTS (the host names the API answers to; not *)")
if DEBUG:
    problems.append("refuses DEBUG=true")
# Reads need credentials too, unless the deployment opens them (WORKFLOWS_API_READS_REQUIRE_AUTH=false).
WORKFLOWS = {**WORKFLOWS, "API_READS_REQUIRE_AUTH": env_bool("WORKFLOWS_API_READS_REQUIRE_AUTH", True)}
if problems:
    raise ImproperlyConfigured("DJANGO_ENV=production refuses to start: " + "; ".join(problems))

# HTTPS only. Behind a proxy that terminates TLS, SECURE_PROXY_SSL_HEADER names the header it sets to
# "https" (X-Forwarded-Proto); only set it when the proxy always sets or strips that header.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
SECURE_REDIRECT_EXEMPT = [r"^health/?$"]  # container healthchecks call it over plain HTTP
PROXY_SSL_HEADER = os.environ.get("SECURE_PROXY_SSL_HEADER", "").strip()
if PROXY_SSL_HEADER:
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + PROXY_SSL_HEADER.upper().replace("-", "_"), "https")
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", str(365 * 24 * 3600)))
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
X_FRAME_OPTIONS = "DENY"
