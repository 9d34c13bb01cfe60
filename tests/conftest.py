"""Shared test configuration: everything under tests/integration/ is marked `integration`; the
tests' own Redis database for tests that touch the mirror in process."""

from collections.abc import Iterator
from typing import Any

import pytest

from devtools.devstack import TEST_REDIS_DB
from workflows import mirror


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def test_redis(settings: Any) -> Iterator[None]:
    """The mirror in the tests' Redis database, not the developer's."""
    settings.REDIS_URL = f"redis://127.0.0.1:6379/{TEST_REDIS_DB}"
    mirror.client.cache_clear()
    yield
    mirror.client.cache_clear()
