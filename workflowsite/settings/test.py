"""Tests (pytest's settings, and the stacks integration tests start): development, with a fast
password hasher since tests create users."""

from workflowsite.settings.development import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
