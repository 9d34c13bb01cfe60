"""Which node attempts are lost, judged on evidence: worker heartbeats, the broker's epoch, the queue.

Workers publish every second, in the broker's Redis, the attempts they hold (workers/heartbeat.py).
An attempt is lost only when its worker stopped publishing (dead: its beat did not change for a
while of this scheduler's own monotonic clock, never a comparison with the worker's clock) and no
live worker holds it, when it runs on a live worker past its timeout plus a grace (the worker is
wedged), or when Redis lost its data (a new epoch) with the attempt queued before and no live worker
holds it nor the queue carries it. Waiting in
the queue is never a loss. It also finds executions whose workflow.start was lost. The decisions
are pure functions; `Reconciler` reads the evidence and the database rows and hands the losses to
the scheduler, which applies them (docs/reliability.md, "Loss is declared on evidence").
"""

import base64
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis
from django.conf import settings

from workflows.kafka_io import partition_for
from workflows.messages import RUN_NODE_TASK, RUN_NODES_TASK
from workflows.models import (
    ACTIVE_NODE_STATUSES,
    Execution,
    ExecutionStatus,
    NodeRun,
    NodeStatus,
    OutboxMessage,
)

logger = logging.getLogger(__name__)
WORKERS_KEY = "wf:workers"
EPOCH_KEY = "wf:epoch"
UNACKED_KEY = "unacked"  # kombu's Redis transport: messages delivered and not acknowledged yet
OVERRUN_GRACE_S = 5.0
PAGE_SIZE = 500
FORGET_DEAD_WORKER_S = 600.0
UNSTARTED_CHECK_INTERVAL_S = 5.0
EPOCH_RECHECK_S = 10.0
# A longer gap between two reads of the heartbeats (this scheduler stalled, or its host was paused
# with the workers') restarts the observation: a beat unchanged across it proves no silence.
OBSERVATION_GAP_S = 5.0
# Schedulers' wall clocks (which stamp `queued_at`) may disagree by this much: an attempt queued up
# to this long after the moment this scheduler saw a new epoch is still checked against the queue.
CLOCK_MARGIN_S = 2.0

Attempt = tuple[str, str, int]  # execution id, node id, attempt number


@dataclass(frozen=True)
class Held:
    """A node attempt a worker holds: received, or claimed and running (`running_s` since)."""

    attempt: Attempt
    running_s: float | None = None
    timeout_s: float | None = None
    finished: bool = False


@dataclass(frozen=True)
class Beat:
    """A worker's last heartbeat: when by its own clock (compared only with its previous beats) and
    what it held."""

    field: str
    worker: str
    at: float
    held: tuple[Held, ...] = ()


@dataclass(frozen=True)
class Loss:
    """An attempt to declare lost, and the evidence, for its `node_lost` event and error."""

    attempt: Attempt
    reason: str


# ------------------------------------------------------------------ pure decisions


def running_since(at: float, since: object, started: bool) -> float | None:
    """Seconds an attempt has run at its beat's `at`, from a start time or a running time."""
    value = _number(since)
    return None if value is None else (at - value if started else value)


def parse_beats(raw: Mapping[bytes, bytes]) -> list[Beat]:
    """The heartbeats of `HGETALL wf:workers`; one that cannot be read is logged and left out."""
    beats = []
    for key, value in raw.items():
        try:
            doc = json.loads(value)
            at = float(doc["at"])
            # Version 2 beats give an attempt's start by the worker's clock (its `at` is by the
            # same clock); version 1, how long it has run.
            started = doc.get("v") == 2
            held = tuple(
                Held(
                    (str(e), str(n), int(a)),
                    running_since(at, since, started),
                    _number(timeout),
                    bool(finished),
                )
                for e, n, a, since, timeout, finished in doc["held"]
            )
            beats.append(Beat(key.decode(), str(doc["worker"]), at, held))
        except (ValueError, KeyError, TypeError) as exc:
            logger.error("ignoring unreadable worker heartbeat %r: %s", key, exc)
    return beats


def _number(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


@dataclass
class Watch:
    """What this scheduler saw of each heartbeat field: the last `at` and the `time.monotonic()`
    when it last changed. Silence is measured on this clock only, so neither a worker's clock skew
    nor a beat retried late after a Redis outage makes a live worker look dead."""

    seen: dict[str, tuple[float, float]] = field(default_factory=dict)
    last_read: float | None = None

    def observe(self, beats: Iterable[Beat], now: float) -> None:
        """Record a read of every heartbeat; a field first seen (or seen again after a gap) counts
        from now; a field gone from the hash is forgotten."""
        if self.last_read is None or now - self.last_read > OBSERVATION_GAP_S:
            self.seen = {}
        self.last_read = now
        previous = self.seen
        self.seen = {}
        for beat in beats:
            last = previous.get(beat.field)
            self.seen[beat.field] = last if last is not None and last[0] == beat.at else (beat.at, now)

    def silent_s(self, beat: Beat, now: float) -> float:
        """How long this beat has been unchanged, as observed (0 for one not seen so)."""
        last = self.seen.get(beat.field)
        return now - last[1] if last is not None and last[0] == beat.at else 0.0

    def restart(self) -> None:
        """A read failed: what was seen before proves nothing about silence after it."""
        self.seen, self.last_read = {}, None


def dead(beats: Iterable[Beat], watch: Watch, now: float, dead_after_s: float) -> list[Beat]:
    """Workers whose beat has not changed for longer than `dead_after_s` of the watch's clock."""
    return [beat for beat in beats if watch.silent_s(beat, now) > dead_after_s]


def held_attempts(beats: Iterable[Beat]) -> set[Attempt]:
    return {held.attempt for beat in beats for held in beat.held}


def dead_worker_losses(beat: Beat, held_live: set[Attempt]) -> list[Loss]:
    """What a dead worker held, except what a live worker holds now (a task the dead worker
    received without claiming it, redelivered by the broker and claimed by another worker)."""
    reason = f"its worker {beat.worker} stopped sending heartbeats"
    return [Loss(held.attempt, reason) for held in beat.held if held.attempt not in held_live]


def overrun_losses(live: Iterable[Beat], grace_s: float) -> list[Loss]:
    """Attempts whose handler still runs past timeout + grace on a live worker: the worker fails a
    node at its timeout itself, so it is wedged. A finished handler whose report waits is not."""
    return [
        Loss(held.attempt, f"it ran past its timeout of {held.timeout_s:g}s on {beat.worker}")
        for beat in live
        for held in beat.held
        if not held.finished
        and held.running_s is not None
        and held.timeout_s is not None
        and held.running_s > held.timeout_s + grace_s
    ]


def gone_with_redis(
    queued_before: Iterable[Attempt], held: set[Attempt], in_queue: set[Attempt]
) -> list[Loss]:
    """Attempts queued before Redis lost its data that no live worker holds and the queue does not
    carry (a batch pushed after the restart put them in the new queue)."""
    reason = "no live worker holds it and no queue carries it (Redis, the scheduler or a worker restarted)"
    return [
        Loss(attempt, reason) for attempt in queued_before if attempt not in held and attempt not in in_queue
    ]


def new_epoch() -> str:
    return json.dumps({"id": uuid.uuid4().hex, "at": time.time()})


def payloads_of(task_name: str, args: Any) -> list[Any]:
    """The node payloads in the arguments of one of our tasks (none for another task)."""
    if task_name == RUN_NODES_TASK:
        return list(args[0])
    return [args[0]] if task_name == RUN_NODE_TASK else []


def attempts_in_message(entry: bytes | str) -> list[Attempt]:
    """The node attempts a queue entry (kombu's Redis envelope of a Celery task) carries."""
    try:
        envelope = json.loads(entry)
        if isinstance(envelope, list):  # an `unacked` value: [message, exchange, routing key]
            envelope = envelope[0]
        args = json.loads(base64.b64decode(envelope["body"]))[0]
        payloads = payloads_of(envelope["headers"]["task"], args)
        return [(str(p["execution_id"]), str(p["node_id"]), int(p["attempt"])) for p in payloads]
    except (ValueError, KeyError, TypeError, IndexError):
        return []


# ------------------------------------------------------------------ reading the evidence


@dataclass(frozen=True)
class Judge:
    """Which executions this scheduler may judge: those on the partitions of a topic it owns and
    has read to the end (`owned`; None when it runs without a consumer, as in tests)."""

    owned: frozenset[int] | None
    partitions: int = 0

    def __call__(self, execution_id: str) -> bool:
        return self.owned is None or (
            self.partitions > 0 and partition_for(execution_id, self.partitions) in self.owned
        )

    def partition(self, execution_id: str) -> int:
        return partition_for(execution_id, self.partitions) if self.partitions else 0


EVERY_EXECUTION = Judge(None)


@dataclass
class Reconciler:
    """Reads the evidence every pass and remembers what it judged already, so that a pass with
    nothing wrong costs one Redis round trip (SET NX + GET of the epoch, HGETALL of the workers)
    and no query; `owns()` (it asks Kafka) is called only when there is something to judge.
    Durations are measured on this process's monotonic clock; only the moment a new epoch is
    first seen is also read on the wall clock, to compare with `queued_at`."""

    client: Callable[[], redis.Redis]
    queue_key: Callable[[], str]
    dead_after_s: float
    watch: Watch = field(default_factory=Watch)
    epoch: bytes | None = None
    epoch_at: float | None = None  # wall clock, when this scheduler first saw the epoch
    epoch_seen: float = 0.0  # the same moment on time.monotonic()
    epoch_checked: frozenset[int] = frozenset()
    epoch_done: bool = True
    next_epoch_check: float = 0.0
    judged: set[Attempt] = field(default_factory=set)
    dead_fields: set[str] = field(default_factory=set)
    unapplied: tuple[list[Loss], list[Beat], set[Attempt]] = ([], [], set())
    next_unstarted_check: float = 0.0
    took_over: bool = False  # Kafka assigned this scheduler partitions since the last pass

    def partitions_assigned(self) -> None:
        """Kafka gave this scheduler partitions (at start, or those of a peer that left or died):
        the next pass checks what nothing carries on them, since a peer killed between its commit
        and its push to the queue left committed attempts that no task carries."""
        self.took_over = True

    def losses(self, owns: Callable[[], Judge]) -> list[Loss]:
        """The attempts found lost since the last pass, among the executions `owns()` judges."""
        pipe = self.client().pipeline(transaction=False)
        pipe.set(EPOCH_KEY, new_epoch(), nx=True)
        pipe.get(EPOCH_KEY)
        pipe.hgetall(WORKERS_KEY)
        _, epoch, raw = self.read(pipe)
        now = time.monotonic()
        beats = parse_beats(raw)
        self.watch.observe(beats, now)
        self.judged &= held_attempts(beats)
        silent = dead(beats, self.watch, now, self.dead_after_s)
        live = [beat for beat in beats if beat not in silent]
        held_live = held_attempts(live)
        suspects = [
            loss
            for loss in [
                *(loss for beat in silent for loss in dead_worker_losses(beat, held_live)),
                *overrun_losses(live, OVERRUN_GRACE_S),
            ]
            if loss.attempt not in self.judged
        ]
        if epoch != self.epoch:  # Redis started empty, or this scheduler did
            # Everything queued before Redis started empty was queued before this scheduler saw the
            # new epoch; a predecessor's commit it never pushed too, when this scheduler starts.
            self.epoch = epoch
            self.check_carried(time.time(), now)
        if self.took_over:
            # Live workers have been publishing all along: check as soon as the partitions are read.
            self.took_over = False
            self.check_carried(time.time(), now - self.dead_after_s)
        newly_dead = {beat.field for beat in silent} - self.dead_fields
        self.dead_fields = {beat.field for beat in silent}
        if newly_dead:
            # A worker killed between kombu's BRPOP and its unacked entry, or after taking a task
            # its last heartbeat did not show, took the task with it: check what nothing carries,
            # now (live workers have been publishing all along).
            self.check_carried(time.time(), now - self.dead_after_s)
        epoch_due = self.epoch_due(now)
        if not (suspects or epoch_due or any(not beat.held for beat in silent)):
            self.unapplied = ([], [], held_live)
            return []
        # What carries attempts is read before Kafka is asked which partitions were read to the end:
        # an attempt a worker released after reporting it then has its report applied already.
        carried = self.carried() if epoch_due and self.unchecked(owns(), now) else None
        judge = owns()
        found = [loss for loss in suspects if judge(loss.attempt[0])]
        if len(found) < len(suspects):
            logger.info(
                "%d lost attempt(s) left to the schedulers of their partitions", len(suspects) - len(found)
            )
        if carried is not None:
            found.extend(self.lost_with_redis(judge, now, *carried))
        self.unapplied = (found, silent, held_live)
        return found

    def read(self, pipe: redis.client.Pipeline) -> list[Any]:
        """Run one of the reconciler's reads; a failed one restarts the observation of silence
        (a beat not read is no evidence that its worker stopped)."""
        try:
            return pipe.execute()
        except redis.RedisError:
            self.watch.restart()
            raise

    def applied(self) -> None:
        """The scheduler applied the last pass's losses: remember them, and delete the heartbeats
        of dead workers once every attempt they held was judged (here; another scheduler judges
        its own partitions' attempts) or is held by a live worker, or long after they died."""
        found, silent, held_live = self.unapplied
        self.judged.update(loss.attempt for loss in found)
        now = time.monotonic()
        gone = [
            beat.field
            for beat in silent
            if all(held.attempt in self.judged or held.attempt in held_live for held in beat.held)
            or self.watch.silent_s(beat, now) > FORGET_DEAD_WORKER_S
        ]
        if gone:
            self.client().hdel(WORKERS_KEY, *gone)
        self.unapplied = ([], [], set())

    def check_carried(self, since_wall: float, seen: float) -> None:
        """Check, once due (dead_after_s after `seen`, monotonic), every active attempt queued
        before `since_wall` against what carries attempts."""
        self.epoch_at, self.epoch_seen = since_wall, seen
        self.epoch_checked, self.epoch_done, self.next_epoch_check = frozenset(), False, 0.0

    def epoch_due(self, now: float) -> bool:
        """The epoch check waits until live workers have re-published what they hold."""
        return (
            not self.epoch_done and now > self.epoch_seen + self.dead_after_s and now >= self.next_epoch_check
        )

    def unchecked(self, judge: Judge, now: float) -> bool:
        """Whether this scheduler judges partitions the epoch check has not covered yet; if not,
        look again later (a rebalance may give it some), for a while."""
        if judge.owned is None or judge.owned - self.epoch_checked:
            return True
        self.next_epoch_check = now + EPOCH_RECHECK_S
        self.epoch_done = now - self.epoch_seen > FORGET_DEAD_WORKER_S
        return False

    def lost_with_redis(
        self, judge: Judge, now: float, held: set[Attempt], in_queue: set[Attempt]
    ) -> list[Loss]:
        """Every active attempt queued before this scheduler saw Redis's new epoch (give or take
        the clock margin) that nothing carries any more, on the partitions not checked yet; read by
        keyset pagination, so that no number of other rows starves one. Partitions this scheduler
        does not judge yet are checked again later."""
        assert self.epoch_at is not None
        partitions = set(range(judge.partitions)) if judge.owned is not None else set()
        fresh = (judge.owned or frozenset()) - self.epoch_checked
        before = datetime.fromtimestamp(self.epoch_at + CLOCK_MARGIN_S, tz=UTC)
        candidates = [
            attempt
            for attempt in active_queued_before(before)
            if judge(attempt[0]) and (judge.owned is None or judge.partition(attempt[0]) in fresh)
        ]
        self.epoch_checked |= fresh
        self.epoch_done = (
            judge.owned is None
            or (bool(partitions) and self.epoch_checked >= partitions)
            or now - self.epoch_seen > FORGET_DEAD_WORKER_S
        )
        self.next_epoch_check = now + EPOCH_RECHECK_S
        losses = gone_with_redis(candidates, held, in_queue)
        if losses:
            logger.warning(
                "%d attempt(s) queued before %s carried by nothing", len(losses), before.isoformat()
            )
        return losses

    def carried(self) -> tuple[set[Attempt], set[Attempt]]:
        """In one transaction: the attempts live workers hold and those the queue carries."""
        pipe = self.client().pipeline(transaction=True)
        pipe.hgetall(WORKERS_KEY)
        pipe.lrange(self.queue_key(), 0, -1)
        pipe.hvals(f"{settings.CELERY_BROKER_TRANSPORT_OPTIONS.get('global_keyprefix', '')}{UNACKED_KEY}")
        raw, entries, unacked = self.read(pipe)
        now = time.monotonic()
        live = [beat for beat in parse_beats(raw) if self.watch.silent_s(beat, now) <= self.dead_after_s]
        in_queue = {attempt for entry in [*entries, *unacked] for attempt in attempts_in_message(entry)}
        return held_attempts(live), in_queue

    def unstarted(self, owns: Callable[[], Judge]) -> list[str]:
        """Every few seconds: RUNNING executions with a ready node never dispatched and no
        workflow.start waiting in the outbox: their start was lost (Scheduler.start is idempotent)."""
        now = time.monotonic()
        if now < self.next_unstarted_check:
            return []
        self.next_unstarted_check = now + UNSTARTED_CHECK_INTERVAL_S
        found = list(unstarted_executions())
        if not found:
            return []
        judge = owns()
        return [execution_id for execution_id in found if judge(execution_id)]


def active_queued_before(before: datetime) -> Iterator[Attempt]:
    """QUEUED and RUNNING attempts queued before a moment, page by page of primary keys."""
    last = 0
    while True:
        page = list(
            NodeRun.objects.filter(status__in=ACTIVE_NODE_STATUSES, queued_at__lt=before, pk__gt=last)
            .order_by("pk")
            .values_list("pk", "execution_id", "node_id", "attempt")[:PAGE_SIZE]
        )
        for _, execution_id, node_id, attempt in page:
            yield str(execution_id), node_id, attempt
        if len(page) < PAGE_SIZE:
            return
        last = page[-1][0]


def unstarted_executions() -> Iterator[str]:
    """RUNNING executions with a ready PENDING node and no message in the outbox, page by page."""
    last: Any = None
    while True:
        rows = Execution.objects.filter(
            status=ExecutionStatus.RUNNING, nodes__status=NodeStatus.PENDING, nodes__pending_deps=0
        )
        if last is not None:
            rows = rows.filter(pk__gt=last)
        page = list(rows.order_by("pk").values_list("pk", flat=True).distinct()[:PAGE_SIZE])
        ids = [str(pk) for pk in page]
        waiting = set(OutboxMessage.objects.filter(key__in=ids).values_list("key", flat=True))
        yield from (execution_id for execution_id in ids if execution_id not in waiting)
        if len(page) < PAGE_SIZE:
            return
        last = page[-1]
