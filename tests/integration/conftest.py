"""Fixtures for integration tests: one real stack per session."""

from collections.abc import Iterator

import pytest

from workflows.devstack import Stack, start_stack


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    running = start_stack()
    yield running
    running.close()
