"""The bare Celery baseline: a chain and a chord of no-op tasks, and a stream of counting no-ops
without results (Celery's own throughput), on the stack's own workers.

The tasks go to the stack's broker and queue, so the same worker processes run them. A chord needs
a result backend: the bench gives CELERY_RESULT_BACKEND to the stack's worker processes only, since
with a backend configured every send_task of the scheduler would also subscribe to its result.
"""

import time
import uuid
from collections.abc import Iterator

import redis
from celery import Celery, chain, chord, group
from celery.canvas import Signature
from celery.result import AsyncResult, GroupResult

from devtools.devstack import Stack
from devtools.tasks import BENCH_COUNT_TASK, BENCH_NOOP_TASK

RESULT_BACKEND_URL = "redis://127.0.0.1:6379/14"
DELETE_CHUNK = 1000
COUNT_POLL_S = 0.01


class Canvas:
    """A client Celery app pointed at one stack's broker, queue and result backend."""

    def __init__(self, stack: Stack) -> None:
        self.app = Celery(
            "bench-baseline",
            broker=stack.env.get("CELERY_BROKER_URL") or stack.env["REDIS_URL"],
            backend=stack.worker_env.get("CELERY_RESULT_BACKEND", RESULT_BACKEND_URL),
            set_as_current=False,
        )
        self.app.conf.update(
            task_default_queue=stack.env["CELERY_QUEUE"],
            task_serializer="json",
            result_serializer="json",
            accept_content=["json"],
            broker_connection_retry_on_startup=True,
        )
        self.result_ids: list[str] = []
        self.counters = redis.Redis.from_url(stack.env["REDIS_URL"])

    def noop(self) -> Signature:
        return self.app.signature(BENCH_NOOP_TASK, immutable=True)

    def run_chain(self, length: int, timeout_s: float) -> float:
        """Seconds from sending a chain of `length` no-ops until its last result is in."""
        started = time.perf_counter()
        result = chain(*[self.noop() for _ in range(length)]).apply_async()
        result.get(timeout=timeout_s)
        elapsed = time.perf_counter() - started
        self.result_ids.extend(result_ids(result))
        return elapsed

    def run_chord(self, width: int, timeout_s: float) -> float:
        """Seconds from sending `width` parallel no-ops plus a callback until the callback's result."""
        started = time.perf_counter()
        result = chord(group(self.noop() for _ in range(width)), self.noop()).apply_async()
        result.get(timeout=timeout_s)
        elapsed = time.perf_counter() - started
        self.result_ids.extend(result_ids(result))
        return elapsed

    def run_stream(self, count: int, timeout_s: float) -> float:
        """Seconds from sending the first of `count` counting no-ops (no results) until all ran."""
        counter = f"bench:count:{uuid.uuid4().hex}"
        deadline = time.monotonic() + timeout_s
        started = time.perf_counter()
        with self.app.producer_or_acquire() as producer:
            for _ in range(count):
                self.app.send_task(BENCH_COUNT_TASK, args=[counter], producer=producer, ignore_result=True)
        while int(self.counters.get(counter) or 0) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{counter}: not all {count} tasks ran within {timeout_s} s")
            time.sleep(COUNT_POLL_S)
        elapsed = time.perf_counter() - started
        self.counters.delete(counter)
        return elapsed

    def close(self) -> None:
        """Delete the results this run stored, then release the connections."""
        backend = self.app.backend
        keys = [backend.get_key_for_task(task_id) for task_id in self.result_ids]
        for start in range(0, len(keys), DELETE_CHUNK):
            backend.client.delete(*keys[start : start + DELETE_CHUNK])
        self.result_ids.clear()
        self.counters.close()
        self.app.close()


def result_ids(result: AsyncResult | GroupResult | None) -> Iterator[str]:
    """Ids of a result, its parents and, for a group, its members."""
    while result is not None:
        if isinstance(result, GroupResult):
            yield from (member.id for member in result.results)
        else:
            yield result.id
        result = result.parent
