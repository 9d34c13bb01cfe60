"""The schedulers' heartbeat in Redis: which are alive, and when each last turned its loop and
last made progress, so that /health and /metrics see a dead or wedged scheduler from any process."""

import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass

from redis import RedisError

from workflows import mirror
from workflows.conf import conf
from workflows.scheduler.loop import Progress

logger = logging.getLogger(__name__)
HEARTBEAT_INTERVAL_S = 1.0
# A scheduler whose heartbeat is older than this is dead: a beat every second, so a few missed
# beats (a slow Redis, a long GC) are no death, and a SIGKILL shows within seconds.
HEARTBEAT_TTL_S = 10.0
KEY_PREFIX = "wf:schedulers:"


@dataclass(frozen=True)
class Beat:
    """One scheduler's last heartbeat; times are wall-clock seconds (time.time())."""

    id: str
    host: str
    pid: int
    started_at: float
    turned_at: float
    progressed_at: float
    expires_at: float


def key() -> str:
    """One hash per consumer group: the schedulers that share its partitions, by id."""
    return KEY_PREFIX + conf().scheduler_group_id


def alive(now: float | None = None) -> list[Beat]:
    """The schedulers of this group whose heartbeat has not expired (raises RedisError)."""
    now = time.time() if now is None else now
    beats = [Beat(**json.loads(raw)) for raw in mirror.client().hgetall(key()).values()]
    return [beat for beat in beats if beat.expires_at > now]


class Heartbeat:
    """Publishes this scheduler's loop progress every HEARTBEAT_INTERVAL_S from a thread of its
    own: the loop only stores two timestamps per turn (Progress), and a loop stuck in a call
    still beats (alive) while its progress ages, which is what /health calls stalled."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.id = uuid.uuid4().hex[:12]
        self.started_at = time.time()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, name="scheduler-heartbeat", daemon=True)

    def start(self) -> None:
        """Beat once now (so /health sees this scheduler before it joins the group), then go on."""
        self.beat_safely()
        self.thread.start()

    def stop(self) -> None:
        """Stop beating and leave the hash at once: a clean stop shows without waiting out the TTL."""
        self.stopped.set()
        self.thread.join(HEARTBEAT_INTERVAL_S * 2)
        try:
            mirror.client().hdel(key(), self.id)
        except RedisError as exc:
            logger.warning("could not remove this scheduler's heartbeat: %s", exc)

    def run(self) -> None:
        while not self.stopped.wait(HEARTBEAT_INTERVAL_S):
            self.beat_safely()

    def beat_safely(self) -> None:
        try:
            self.beat()
        except RedisError as exc:  # Redis away: the heartbeat resumes with it
            logger.warning("could not publish the scheduler heartbeat: %s", exc)

    def beat(self) -> None:
        """Write this scheduler's beat, keep the hash alive, and drop beats long expired (the
        schedulers that died without leaving)."""
        now = time.time()
        beat = Beat(
            id=self.id,
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at=self.started_at,
            turned_at=self.progress.turned_at,
            progressed_at=self.progress.progressed_at,
            expires_at=now + HEARTBEAT_TTL_S,
        )
        pipe = mirror.client().pipeline(transaction=False)
        pipe.hset(key(), self.id, json.dumps(asdict(beat)))
        pipe.expire(key(), int(HEARTBEAT_TTL_S))
        pipe.hgetall(key())
        *_, stored = pipe.execute()
        dead = [name for name, raw in stored.items() if json.loads(raw)["expires_at"] < now - HEARTBEAT_TTL_S]
        if dead:
            mirror.client().hdel(key(), *dead)
