"""Fixtures shared by the tests of the workflows package."""

from collections.abc import Iterator
from typing import Any

import pytest

from workflows import mirror
from workflows.devstack import TEST_REDIS_DB


@pytest.fixture
def tests_redis(settings: Any) -> Iterator[None]:
    """The mirror on the tests' Redis database, not the developer's (status reads rebuild it)."""
    settings.REDIS_URL = f"redis://127.0.0.1:6379/{TEST_REDIS_DB}"
    mirror.client.cache_clear()
    yield
    mirror.client.cache_clear()
