"""Handlers run on reused threads, concurrently, each node with its own timeout.

A Celery task may carry several nodes; each runs on a thread of its own, so one slow node does
not hold back the others and a timeout works in any Celery pool. Threads are reused: starting
one per node cost about 0.6 ms of CPU per node in a busy worker. A handler that overruns its
timeout is abandoned with its thread, and its late result is never reported.

A thread cannot be killed, so a handler that ignores its timeout keeps its thread until it
returns. At WORKFLOW_MAX_ABANDONED_HANDLERS such threads the worker process retires itself (a
warm shutdown once its current reports are sent), its supervisor starts a fresh one, and the
hung threads end with the old process.
"""

import logging
import math
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from workflows.conf import conf
from workflows.handlers.registry import NodeContext, run_handler

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class Job:
    """One node's handler call; `output` and `error` are its result once it has finished."""

    handler: str
    context: NodeContext
    timeout_s: float | None
    output: Any = None
    error: str = ""
    abandoned: bool = False
    done: bool = False
    finished: queue.SimpleQueue["Job"] = field(init=False, repr=False)  # set by run_all, told when done

    def run(self) -> None:
        try:
            self.output = run_handler(self.handler, self.context)
        except BaseException as exc:  # any handler failure is the node's failure, reported, not raised
            self.error = describe(exc)
            if not isinstance(exc, Exception):
                self.abandoned = True  # SystemExit and the like end the thread
        with _hung_lock:
            self.done = True
            _hung.discard(self)
        self.finished.put(self)


def describe(exc: BaseException) -> str:
    """`Type: message`, even for an exception whose message cannot be made."""
    try:
        return f"{type(exc).__name__}: {exc}"
    except Exception:
        return f"{type(exc).__name__} (its message could not be shown)"


def run_all(jobs: Sequence[Job]) -> Iterator[tuple[Job, Any, str]]:
    """Start every job, then yield (job, output, error) for each as it finishes, first finished
    first; a job still running at its timeout is abandoned and yielded with a timeout error."""
    finished: queue.SimpleQueue[Job] = queue.SimpleQueue()
    started = time.monotonic()
    deadlines = {}
    for job in jobs:
        job.finished = finished
        deadlines[job] = started + job.timeout_s if job.timeout_s is not None else math.inf
        _start(job)
    while deadlines:
        wait_s = min(deadlines.values()) - time.monotonic()
        try:
            job = finished.get(timeout=None if wait_s == math.inf else max(wait_s, 0.0))
        except queue.Empty:
            now = time.monotonic()
            for job in [job for job, deadline in deadlines.items() if deadline <= now]:
                del deadlines[job]
                _abandon(job)
                yield job, None, f"timed out after {job.timeout_s}s"
            continue
        if deadlines.pop(job, None) is not None:  # not yielded as timed out already
            yield job, job.output, job.error


def _abandon(job: Job) -> None:
    with _hung_lock:
        job.abandoned = True
        if not job.done:
            _hung.add(job)


def abandoned_handlers() -> int:
    """How many handlers abandoned at their timeout are still running in this process."""
    with _hung_lock:
        return len(_hung)


def retire_if_too_many_abandoned(stop: Callable[[], None] | None = None) -> bool:
    """At the cap of abandoned handlers still running, stop this worker process once (`stop`,
    by default SIGTERM to itself: Celery's warm shutdown takes no new task, finishes those
    running and exits) so that what runs it starts a fresh one. Returns whether it did."""
    hung, cap = abandoned_handlers(), conf().max_abandoned_handlers
    if hung < cap or _retiring.is_set():
        return False
    _retiring.set()
    logger.error(
        "%d abandoned handler threads still run (WORKFLOW_MAX_ABANDONED_HANDLERS %d): "
        "this worker shuts down so that a fresh one replaces it",
        hung,
        cap,
    )
    (stop or _warm_shutdown)()
    return True


def _warm_shutdown() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


def _start(job: Job) -> None:
    try:
        runner = _idle_runners.get_nowait()
    except queue.Empty:
        runner = _Runner()
        runner.start()
    runner.inbox.put(job)


class _Runner(threading.Thread):
    """Runs one job at a time, then waits for the next; ends after a job it was abandoned on,
    so a hung handler keeps only its own thread."""

    def __init__(self) -> None:
        super().__init__(name="handler", daemon=True)
        self.inbox: queue.SimpleQueue[Job] = queue.SimpleQueue()

    def run(self) -> None:
        while True:
            job = self.inbox.get()
            job.run()
            if job.abandoned:
                return
            _idle_runners.put(self)


_idle_runners: queue.SimpleQueue[_Runner] = queue.SimpleQueue()
_hung: set[Job] = set()  # abandoned at their timeout, handler still running
_hung_lock = threading.Lock()
_retiring = threading.Event()  # this process has been asked to shut down
