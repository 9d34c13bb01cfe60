"""A complete production environment for the tests that start processes with production settings."""

PRODUCTION = {
    "DJANGO_ENV": "production",
    "SECRET_KEY": "a-production-secret-of-fifty-or-more-characters-0123456789abcdef",
    "DATABASE_URL": "postgres://workflows:workflows@127.0.0.1:5432/workflows",
    "ALLOWED_HOSTS": "api.example.com",
    "WORKFLOW_SIGNING_KEY": "a-signing-key-for-the-production-settings-test",
}
