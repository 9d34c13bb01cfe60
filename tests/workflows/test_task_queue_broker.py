"""The scheduler pushes node tasks onto a Redis list itself, so it refuses any other broker."""

from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from workflows import mirror, task_queue


@pytest.fixture
def fresh_client() -> Any:
    task_queue.client.cache_clear()
    yield
    task_queue.client.cache_clear()


def test_a_broker_that_is_not_redis_is_refused_by_name(settings: Any, fresh_client: None) -> None:
    settings.CELERY_BROKER_URL = "amqp://guest@rabbit:5672//"
    with pytest.raises(ImproperlyConfigured, match=r"CELERY_BROKER_URL must be a Redis URL.*amqp://"):
        task_queue.client()


def test_the_mirror_client_serves_as_broker_when_both_are_one_redis(
    settings: Any, fresh_client: None
) -> None:
    settings.CELERY_BROKER_URL = settings.REDIS_URL

    assert task_queue.client() is mirror.client()
