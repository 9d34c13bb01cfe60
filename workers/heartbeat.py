"""Worker liveness: a thread that publishes, every second, the node attempts this worker holds.

The scheduler's reconciler (workflows/scheduler/reconciler.py) reads `wf:workers` in the broker's Redis: a
worker silent for WORKFLOW_WORKER_DEAD_AFTER_SECONDS is dead and what it held is lost; an attempt
whose handler runs past its timeout plus a grace on a live worker is lost too; anything else a
worker holds is not, however long it waited in the queue. Each worker process writes a field of
its own (Celery hostname and a random suffix), so a worker restarted under the same name does not
hide what the killed one held. The heartbeat also sets the broker's epoch key when it is missing
(Redis started empty).
"""

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis
from celery.signals import task_received, worker_ready, worker_shutdown
from celery.worker import state
from redis import RedisError

from workflows import task_queue
from workflows.conf import conf
from workflows.scheduler.reconciler import EPOCH_KEY, WORKERS_KEY, Attempt, new_epoch, payloads_of

logger = logging.getLogger(__name__)
MIN_BEAT_GAP_S = 0.2


BEAT_VERSION = 2  # held entries carry their start time (version 1: seconds running)


@dataclass
class Running:
    """An attempt this process claimed: since when (time.time(), compared only with the beat's own
    `at`), its timeout, and whether its handler has finished (its report may still wait for
    Kafka); `entry` is its heartbeat entry as JSON, made when one of these changes, since every
    claim publishes every entry."""

    started_at: float
    timeout_s: float | None
    finished: bool
    entry: str

    @classmethod
    def of(
        cls, attempt: Attempt, started_at: float, timeout_s: float | None, finished: bool = False
    ) -> "Running":
        return cls(started_at, timeout_s, finished, json.dumps([*attempt, started_at, timeout_s, finished]))


_lock = threading.Lock()
_running: dict[Attempt, Running] = {}
_waiting: list[tuple[Attempt, str]] = []  # received, not claimed: (attempt, entry), as of the last beat


def attempt_of(payload: dict[str, Any]) -> Attempt:
    return str(payload["execution_id"]), str(payload["node_id"]), int(payload["attempt"])


def hold(payloads: Iterable[dict[str, Any]]) -> list[Attempt]:
    """Record the attempts this process is about to claim; the claim publishes them first
    (`write_beat`), so whatever the mirror shows RUNNING on a worker is in its heartbeat, even if
    the worker dies the moment after. Returns those this call recorded: a duplicate delivery of an
    attempt this process runs already leaves its entry alone, and must not release it."""
    now = time.time()
    inserted = []
    with _lock:
        for payload in payloads:
            attempt = attempt_of(payload)
            if attempt not in _running:
                _running[attempt] = Running.of(attempt, now, seconds(payload.get("timeout_seconds")))
                inserted.append(attempt)
    return inserted


def seconds(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def write_beat(pipe: redis.client.Pipeline) -> None:
    """Queue this worker's heartbeat on a pipeline of the broker's Redis (the claim's, by default)."""
    for heartbeat in _heartbeat:
        heartbeat.queue(pipe)


def publish_now() -> None:
    """Publish the heartbeat in a round trip of its own (a broker apart from the mirror)."""
    for heartbeat in _heartbeat:
        heartbeat.publish()


def finished(attempt: Attempt) -> None:
    with _lock:
        if attempt in _running:
            running = _running[attempt]
            _running[attempt] = Running.of(attempt, running.started_at, running.timeout_s, finished=True)


def overran(attempts: Iterable[Attempt]) -> None:
    """Keep attempts whose outcome could not be reported as handlers running past a timeout of 0,
    so that the reconciler declares them lost (within its grace) rather than nothing holding them."""
    with _lock:
        for attempt in attempts:
            if attempt in _running:
                _running[attempt] = Running.of(attempt, _running[attempt].started_at, 0.0)


def release(attempts: Iterable[Attempt]) -> None:
    """Forget attempts whose reports Kafka has acknowledged."""
    with _lock:
        for attempt in attempts:
            _running.pop(attempt, None)


def requested() -> list[Attempt]:
    """The attempts of the tasks Celery has received and not acknowledged yet: reserved (waiting
    for a pool slot) or active (their claims may not have been made yet)."""
    for _ in range(3):  # the sets are changed by the worker's own threads meanwhile
        try:
            requests = [*state.reserved_requests, *state.active_requests]
            break
        except RuntimeError:
            continue
    else:
        return []
    attempts = []
    for request in requests:
        try:
            attempts.extend(attempt_of(payload) for payload in payloads_of(request.name, request.args))
        except (IndexError, KeyError, TypeError, ValueError):
            continue  # a malformed task: its entry point rejects it, there is nothing to hold
    return attempts


def held() -> list[list[Any]]:
    """[execution id, node id, attempt, started at, timeout seconds, finished] per attempt."""
    return json.loads(held_json(refresh=True))


def held_json(*, refresh: bool) -> str:
    """held() as the JSON array a beat carries, joined from prepared entries: a claim publishes
    every attempt the worker holds, and serialising up to 256 entries anew cost 0.4 ms a task.
    The received ones are read from Celery on `refresh` (the beat thread's beats); a claim's beat
    shows them as the last of those saw them."""
    global _waiting
    if refresh:
        _waiting = [(attempt, json.dumps([*attempt, None, None, False])) for attempt in requested()]
    with _lock:
        entries = [entry for attempt, entry in _waiting if attempt not in _running]
        entries += [running.entry for running in _running.values()]
    return f"[{','.join(entries)}]"


class Heartbeat(threading.Thread):
    """Publishes this worker's heartbeat until stopped; a Redis outage is logged and outlived."""

    def __init__(self, worker: str) -> None:
        super().__init__(name="heartbeat", daemon=True)
        self.worker = worker
        self.field = f"{worker}/{uuid.uuid4().hex[:8]}"
        self.stopping = threading.Event()
        self.wake = threading.Event()
        self.failing = False

    def queue(self, pipe: redis.client.Pipeline, *, refresh: bool = False) -> None:
        head = json.dumps({"v": BEAT_VERSION, "worker": self.worker, "at": time.time()})[:-1]
        pipe.hset(WORKERS_KEY, self.field, f'{head}, "held": {held_json(refresh=refresh)}}}')

    def beat(self) -> None:
        """Publish; also set the broker's epoch if Redis started empty (the claims' beats leave
        that to this one, once a second)."""
        pipe = task_queue.client().pipeline(transaction=False)
        pipe.set(EPOCH_KEY, new_epoch(), nx=True)
        self.queue(pipe, refresh=True)
        pipe.execute()

    def publish(self) -> None:
        """Beat now; a Redis outage is logged once and must not stop the nodes, nor any other
        error the beat thread: a worker whose heartbeat stops looks dead and its nodes run again."""
        try:
            self.beat()
            if self.failing:
                logger.info("heartbeat published again")
            self.failing = False
        except RedisError as exc:
            if not self.failing:
                logger.warning("could not publish the worker heartbeat (%s); retrying", exc)
            self.failing = True
        except Exception:
            logger.exception("could not publish the worker heartbeat; retrying")
            self.failing = True

    def run(self) -> None:
        while not self.stopping.is_set():
            self.publish()
            beaten = time.monotonic()
            self.wake.wait(conf().worker_heartbeat_seconds)
            self.wake.clear()
            # Tasks received back to back would otherwise make this a loop of beats, each
            # walking every request the worker holds: a beat "soon" is one within MIN_BEAT_GAP_S.
            self.stopping.wait(MIN_BEAT_GAP_S - (time.monotonic() - beaten))

    def stop(self) -> None:
        """A warm shutdown: every task has finished and reported, so nothing is held, and the
        field goes at once. A cold one leaves attempts held: the field stays, goes silent, and the
        reconciler declares them lost once the worker is dead."""
        self.stopping.set()
        self.wake.set()
        self.join(conf().worker_heartbeat_seconds + 1)
        with _lock:
            holding = len(_running)
        if holding:
            logger.warning("stopping with %d attempt(s) held: the heartbeat is left to go silent", holding)
            return
        try:
            task_queue.client().hdel(WORKERS_KEY, self.field)
        except RedisError as exc:
            logger.warning("could not delete the worker heartbeat (%s)", exc)


_heartbeat: list[Heartbeat] = []


@worker_ready.connect
def start_heartbeat(sender: Any = None, **kwargs: object) -> None:
    heartbeat = Heartbeat(getattr(sender, "hostname", None) or "worker")
    heartbeat.start()
    _heartbeat.append(heartbeat)


@task_received.connect
def task_received_beat(**kwargs: object) -> None:
    """A task just received is held from now on: publish it soon, not within the second."""
    for heartbeat in _heartbeat:
        heartbeat.wake.set()


@worker_shutdown.connect
def stop_heartbeat(**kwargs: object) -> None:
    while _heartbeat:
        _heartbeat.pop().stop()
