"""A complete production environment, and a fresh interpreter started with it, for the tests of
production settings."""

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = {
    "DJANGO_ENV": "production",
    "SECRET_KEY": "a-production-secret-of-fifty-or-more-characters-0123456789abcdef",
    "DATABASE_URL": "postgres://workflows:workflows@127.0.0.1:5432/workflows",
    "ALLOWED_HOSTS": "api.example.com",
    "WORKFLOW_SIGNING_KEY": "a-signing-key-for-the-production-settings-test",
}
# Variables of the caller's environment that would change what the settings see.
CLEARED = {
    *PRODUCTION,
    "DEBUG",
    "WORKFLOWS_API_TOKEN",
    "WORKFLOWS_ALLOW_ANONYMOUS_WRITES",
    "WORKFLOWS_API_READS_REQUIRE_AUTH",
    "SECURE_PROXY_SSL_HEADER",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "CELERY_RESULT_BACKEND",
    "REDIS_SSL_CA_FILE",
}


def run_in_production(args: list[str], **overrides: str | None) -> subprocess.CompletedProcess[str]:
    """Run `args` with the default settings module and the production environment changed by
    `overrides` (None removes a variable)."""
    env = {name: value for name, value in os.environ.items() if name not in CLEARED}
    env.update({name: value for name, value in {**PRODUCTION, **overrides}.items() if value is not None})
    env["DJANGO_SETTINGS_MODULE"] = "workflowsite.settings"
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
