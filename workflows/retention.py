"""Retention: finished executions older than a cutoff deleted in short batches, with their mirror."""

import logging
import re
import uuid
from collections.abc import Collection
from dataclasses import dataclass, fields
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from redis import RedisError

from workflows import mirror
from workflows.models import (
    TERMINAL_EXECUTION_STATUSES,
    Execution,
    ExecutionEvent,
    NodeRun,
    OutboxMessage,
)

logger = logging.getLogger(__name__)
# Executions per transaction: each batch locks its own rows only, for a few milliseconds, so the
# scheduler's transactions (on other executions) never wait behind a purge.
PURGE_BATCH_SIZE = 500
# and at most this many nodes, unless one execution alone has more: large DAGs get fewer per batch.
PURGE_BATCH_NODES = 50_000
DURATION_UNIT_S = {"d": 86400, "h": 3600, "m": 60, "s": 1}
DURATION = re.compile(r"(\d+)\s*([dhms])")


def parse_duration(text: str) -> timedelta:
    """A duration as operators write it: 30d, 12h, 90m or 45s (a whole number above 0)."""
    match = DURATION.fullmatch(text.strip().lower())
    if match is None or int(match[1]) == 0:
        raise ValueError(
            f"invalid duration {text!r}: expected a whole number above 0 and a unit "
            "(d, h, m or s), like 30d, 12h or 90m"
        )
    return timedelta(seconds=int(match[1]) * DURATION_UNIT_S[match[2]])


@dataclass(frozen=True)
class Purged:
    """How many rows a purge deleted (or, in a dry run, would delete)."""

    executions: int = 0
    nodes: int = 0
    events: int = 0
    outbox_messages: int = 0

    def __add__(self, other: "Purged") -> "Purged":
        return Purged(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


def expired(
    *, before: datetime, statuses: Collection[str] = TERMINAL_EXECUTION_STATUSES
) -> QuerySet[Execution]:
    """Executions in one of `statuses` that finished before `before`. Only finished statuses are
    accepted: a pending or running execution is never selected."""
    unfinished = set(statuses) - TERMINAL_EXECUTION_STATUSES
    if unfinished or not statuses:
        raise ValueError(
            f"only finished executions are purged, not {', '.join(sorted(unfinished)) or 'none'}: "
            f"choose among {', '.join(sorted(TERMINAL_EXECUTION_STATUSES))}"
        )
    return Execution.objects.filter(status__in=sorted(statuses), finished_at__lt=before)


def purge(
    *,
    older_than: timedelta,
    statuses: Collection[str] = TERMINAL_EXECUTION_STATUSES,
    dry_run: bool = False,
    batch_size: int = PURGE_BATCH_SIZE,
    now: datetime | None = None,
) -> Purged:
    """Delete the executions finished more than `older_than` ago, `batch_size` per transaction,
    walking their primary keys; a dry run counts what would go and deletes nothing."""
    selected = expired(before=(now or timezone.now()) - older_than, statuses=statuses).order_by("pk")
    total, after = Purged(), None
    while True:
        page = selected if after is None else selected.filter(pk__gt=after)
        ids = within_nodes(list(page.values_list("pk", "total_nodes")[:batch_size]), PURGE_BATCH_NODES)
        if not ids:
            return total
        after = ids[-1]
        total += count_batch(ids) if dry_run else delete_batch(selected, ids)


def within_nodes(rows: list[tuple[uuid.UUID, int]], most_nodes: int) -> list[uuid.UUID]:
    """The leading executions of (id, node count) rows whose nodes add up to at most
    `most_nodes`; the first one always, however large."""
    ids, nodes = [], 0
    for pk, count in rows:
        nodes += count
        if ids and nodes > most_nodes:
            break
        ids.append(pk)
    return ids


def count_batch(ids: list[uuid.UUID]) -> Purged:
    """What deleting these executions would delete."""
    return Purged(
        executions=len(ids),
        nodes=NodeRun.objects.filter(execution_id__in=ids).count(),
        events=ExecutionEvent.objects.filter(execution_id__in=ids).count(),
        outbox_messages=OutboxMessage.objects.filter(key__in=[str(pk) for pk in ids]).count(),
    )


def delete_batch(selected: QuerySet[Execution], ids: list[uuid.UUID]) -> Purged:
    """Delete one batch in a short transaction, then its mirror entries. The rows are locked and
    selected again first: one retried meanwhile is running and stays, one another purge holds
    is skipped. The children go first (Django's collector: nodes and events by execution id)."""
    with transaction.atomic():
        locked = selected.filter(pk__in=ids).select_for_update(skip_locked=True)
        ids = list(locked.values_list("pk", flat=True))
        outbox, _ = OutboxMessage.objects.filter(key__in=[str(pk) for pk in ids]).delete()
        _, deleted = Execution.objects.filter(pk__in=ids).only("pk").delete()
    forget_mirrors(ids)
    return Purged(
        executions=deleted.get(Execution._meta.label, 0),
        nodes=deleted.get(NodeRun._meta.label, 0),
        events=deleted.get(ExecutionEvent._meta.label, 0),
        outbox_messages=outbox,
    )


def forget_mirrors(ids: list[uuid.UUID]) -> None:
    """Drop the purged executions' Redis mirrors (a worker's claims live in them too). Redis down
    is no failure: a finished execution's mirror expires by itself (WORKFLOW_MIRROR_TTL_SECONDS)."""
    if not ids:
        return
    try:
        mirror.client().delete(*(mirror.key(pk) for pk in ids))
    except RedisError:
        logger.warning(
            "Redis unavailable: %d purged execution(s)' mirrors will expire on their own", len(ids)
        )
