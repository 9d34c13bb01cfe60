"""Fixtures for integration tests: one real stack per session."""

from collections.abc import Iterator

import pytest

from devtools.devstack import Stack, start_stack


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    running = start_stack()
    yield running
    running.close()


@pytest.fixture(scope="module")
def private_stack() -> Iterator[Stack]:
    """A stack with a Redis and a Kafka of its own, which fault tests may kill and restart."""
    running = start_stack(private_redis=True, private_kafka=True)
    yield running
    running.close()


@pytest.fixture
def fault_stack(private_stack: Stack) -> Iterator[Stack]:
    """The private stack, made whole before and after each test: its services up, API, scheduler
    and worker running, extra processes stopped, whatever the previous test killed."""
    private_stack.restore()
    yield private_stack
    private_stack.restore()
