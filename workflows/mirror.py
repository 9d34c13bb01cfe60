"""The Redis mirror of execution state, for fast status reads; the database stays the truth.

One hash per execution: field `execution` holds the summary, field `n:<node_id>` each node's
detail, fields `by:<actor field>` who submitted, triggered, cancelled and retried it (written by
the services, never by the scheduler), all as JSON. A missing hash is rebuilt from the database by
the selectors.
"""

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

import redis
from django.utils import timezone
from redis import RedisError
from redis.exceptions import NoScriptError

from workflows.clients import redis_client
from workflows.conf import conf
from workflows.models import ACTOR_FIELDS, TERMINAL_EXECUTION_STATUSES, Execution, NodeRun, NodeStatus

logger = logging.getLogger(__name__)
# A running execution's mirror lives this long after its last change; a finished one's until
# WORKFLOW_MIRROR_TTL_SECONDS after it finished (expires_at).
MIRROR_TTL_S = 7 * 24 * 3600
SUMMARY_FIELD = "execution"
NODE_PREFIX = "n:"
ACTOR_PREFIX = "by:"

# Marks a node RUNNING for a worker's claim. Returns 1 when claimed (or when this very claim was
# applied already: a retry after a timeout), -1 when the node must not run: a duplicate delivery
# of an attempt already running, a superseded attempt, or a node cancelled or finished meanwhile.
# An execution missing from the mirror (Redis restarted empty, a broker Redis apart lost it) gets
# a hash holding the claim alone, with the mirror's TTL, so that a second copy of the attempt is
# refused; the selectors rebuild the rest from the database without overwriting it (HSETNX).
_CLAIM = f"""
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current == ARGV[2] then return 1 end
local attempt = tonumber(ARGV[3])
if current then
  local node = cjson.decode(current)
  if node.attempt > attempt then return -1 end
  if node.attempt == attempt and node.status ~= '{NodeStatus.QUEUED.value}' then return -1 end
end
local missing = redis.call('EXISTS', KEYS[1]) == 0
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if missing then redis.call('EXPIRE', KEYS[1], ARGV[4]) end
return 1
"""


@cache
def client() -> redis.Redis:
    """This process's Redis client (a connection pool; safe to share between threads)."""
    return redis_client("mirror")


def key(execution_id: object) -> str:
    return f"wf:exec:{execution_id}"


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def execution_summary(execution: Execution) -> dict[str, Any]:
    """The execution fields a status read needs."""
    return {
        "name": execution.name,
        "status": execution.status,
        "total": execution.total_nodes,
        "completed": execution.completed_nodes,
        "failed": execution.failed_nodes,
        "error": execution.error or None,
        "created_at": _iso(execution.created_at),
        "started_at": _iso(execution.started_at),
        "finished_at": _iso(execution.finished_at),
    }


def execution_actors(execution: Execution) -> dict[str, str | None]:
    """Who submitted, triggered, cancelled and retried it, by username (None: nobody yet, a command
    or an anonymous request). The users must be loaded with the execution (select_related), or
    each costs a query."""
    users = {field: getattr(execution, field) for field in ACTOR_FIELDS}
    return {field: user.get_username() if user is not None else None for field, user in users.items()}


def actor_fields(execution: Execution) -> dict[str, str]:
    """The execution's `by:` fields of the hash."""
    return {ACTOR_PREFIX + field: json.dumps(name) for field, name in execution_actors(execution).items()}


@dataclass(frozen=True, slots=True)
class PendingNode:
    """A node that has not run yet, without the cost of a model instance (see workflow_submit)."""

    node_id: str
    handler: str
    position: int
    status: str = NodeStatus.PENDING
    attempt: int = 0
    queued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    worker: str = ""
    error: str = ""


NodeState = NodeRun | PendingNode
Changes = Iterable[tuple[Execution, Iterable[NodeState]]]


def node_detail(node: NodeState) -> dict[str, Any]:
    """One node's state as the status endpoint shows it."""
    return {
        "status": node.status,
        "handler": node.handler,
        "position": node.position,
        "attempt": node.attempt,
        "queued_at": _iso(node.queued_at),
        "started_at": _iso(node.started_at),
        "finished_at": _iso(node.finished_at),
        "worker": node.worker or None,
        "error": node.error or None,
    }


def write(pipe: redis.client.Pipeline, execution: Execution, nodes: Iterable[NodeState]) -> None:
    """Queue the writes for one execution and the given nodes on a pipeline."""
    mapping = {SUMMARY_FIELD: json.dumps(execution_summary(execution))}
    mapping.update({NODE_PREFIX + node.node_id: json.dumps(node_detail(node)) for node in nodes})
    pipe.hset(key(execution.pk), mapping=mapping)
    expire(pipe, execution.pk, expires_at(execution))


def expires_at(execution: Execution) -> datetime | None:
    """When a finished execution leaves the mirror; None while it runs. Fixed by the finish, so no
    read or write keeps an old execution in Redis."""
    if execution.status not in TERMINAL_EXECUTION_STATUSES:
        return None
    return (execution.finished_at or timezone.now()) + timedelta(seconds=conf().mirror_ttl_seconds)


def expire(
    pipe: redis.client.Pipeline, execution_id: object, at: datetime | None, *, keep: bool = False
) -> None:
    """Queue the expiry: at `at` for a finished execution, else a running one's TTL from now;
    `keep` leaves an expiry already set."""
    if at is None:
        pipe.expire(key(execution_id), MIRROR_TTL_S, nx=keep)
    else:
        pipe.expireat(key(execution_id), at, nx=keep)


def write_changes(
    pipe: redis.client.Pipeline, changes: Iterable[tuple[Execution, Iterable[NodeState]]]
) -> None:
    """Queue the writes for several executions' changes on a pipeline."""
    for execution, nodes in changes:
        write(pipe, execution, nodes)


def publish(changes: Changes) -> None:
    """Write several executions' changes in one round trip."""
    pipe = client().pipeline(transaction=False)
    write_changes(pipe, changes)
    pipe.execute()


def publish_with_actors(execution: Execution, nodes: Iterable[NodeState]) -> None:
    """Write one execution's changes and who acted on it, in one round trip (the services)."""
    pipe = client().pipeline(transaction=False)
    write(pipe, execution, nodes)
    pipe.hset(key(execution.pk), mapping=actor_fields(execution))
    pipe.execute()


def fill_missing(execution: Execution, nodes: Iterable[NodeState]) -> None:
    """Rebuild a missing or partial mirror from the database without overwriting what is there:
    a field the scheduler wrote meanwhile is newer than this read of the database. Nor is its
    expiry: a hash that has one keeps it (NX), so a read never extends a mirror. A finished
    execution past its expiry is not mirrored again: the database serves its reads."""
    finish_expiry = expires_at(execution)
    if finish_expiry is not None and finish_expiry <= timezone.now():
        return
    pipe = client().pipeline(transaction=False)
    pipe.hsetnx(key(execution.pk), SUMMARY_FIELD, json.dumps(execution_summary(execution)))
    for field, value in actor_fields(execution).items():
        pipe.hsetnx(key(execution.pk), field, value)
    for node in nodes:
        pipe.hsetnx(key(execution.pk), NODE_PREFIX + node.node_id, json.dumps(node_detail(node)))
    expire(pipe, execution.pk, finish_expiry, keep=True)
    pipe.execute()


def publish_quietly(execution: Execution, nodes: Iterable[NodeState]) -> None:
    """Publish one execution and its actors, tolerating a Redis outage: the mirror is rebuilt on the
    next read."""
    try:
        publish_with_actors(execution, nodes)
    except RedisError:
        logger.warning("Redis unavailable; the mirror of execution %s will be rebuilt on read", execution.pk)


CLAIM_SHA = hashlib.sha1(_CLAIM.encode()).hexdigest()


def mark_running(
    claims: Sequence[tuple[str, str, dict[str, Any]]],
    first: Callable[[redis.client.Pipeline], None] | None = None,
) -> list[bool]:
    """Workers' claims of node attempts (execution id, node id, RUNNING detail), in one round
    trip; False means the worker must not run that node. `first` queues writes Redis applies
    before the claims, in the same round trip (the worker's heartbeat).

    The database learns the start time with the completion; the mirror shows RUNNING at once.
    The script is called by its hash and sent only when Redis does not know it (after a restart).
    """

    def claim_all() -> list[Any]:
        pipe = client().pipeline(transaction=False)
        if first is not None:
            first(pipe)
        for execution_id, node_id, detail in claims:
            pipe.evalsha(
                CLAIM_SHA,
                1,
                key(execution_id),
                NODE_PREFIX + node_id,
                json.dumps(detail),
                detail["attempt"],
                MIRROR_TTL_S,
            )
        return pipe.execute()

    try:
        verdicts = claim_all()
    except NoScriptError:  # Redis restarted and forgot the script: no claim was applied
        client().script_load(_CLAIM)
        verdicts = claim_all()
    return [int(verdict) >= 0 for verdict in verdicts[len(verdicts) - len(claims) :]]


def read(execution_id: object) -> tuple[dict[str, Any], dict[str, dict[str, Any]]] | None:
    """The mirrored summary (with `actors`, those mirrored) and node details, or None when the
    mirror lacks this execution."""
    raw = client().hgetall(key(execution_id))
    summary = raw.pop(SUMMARY_FIELD.encode(), None)
    if summary is None:
        return None
    nodes, actors = {}, {}
    for field, value in raw.items():
        name = field.decode()
        if name.startswith(NODE_PREFIX):
            nodes[name[len(NODE_PREFIX) :]] = json.loads(value)
        elif name.startswith(ACTOR_PREFIX):
            actors[name[len(ACTOR_PREFIX) :]] = json.loads(value)
    ordered = dict(sorted(nodes.items(), key=lambda item: item[1].get("position", 0)))
    return {**json.loads(summary), "actors": actors}, ordered
