"""No-op Celery tasks for the benchmark's bare-canvas baseline (`manage.py bench`); development only."""

from functools import cache

import redis
from celery import shared_task
from django.conf import settings

BENCH_NOOP_TASK = "devtools.bench_noop"
BENCH_COUNT_TASK = "devtools.bench_count"


@shared_task(name=BENCH_NOOP_TASK, ignore_result=False)
def bench_noop() -> None:
    """Do nothing: a canvas of these measures Celery's own cost per task.

    Results are stored (unlike run_node's) because chains and chords are awaited through them.
    """


@shared_task(name=BENCH_COUNT_TASK, ignore_result=True)
def bench_count(counter: str) -> None:
    """Count one run in Redis and do nothing else: many of these, without results, measure how
    many tasks a second Celery alone gets through on the same broker and worker."""
    _redis().incr(counter)


@cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)
