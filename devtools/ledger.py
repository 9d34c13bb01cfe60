"""The invocation ledger: one JSON line per handler invocation, for tests and the soak to count effects.

Installed as a handler invocation hook by the devtools app (devtools/apps.py), so only
development and test settings have it.

Kafka events say what the scheduler saw; the ledger says what the handlers did, so a node run
twice shows even when only one of its reports was applied. It is written only when
WORKFLOW_INVOCATION_LEDGER names a file, so production pays nothing. Each line is one
`os.write` on a descriptor opened with O_APPEND, so the lines of concurrent threads and
processes never interleave.
"""

import json
import os
import socket
import time
from collections.abc import Collection, Iterable
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

from workflows.conf import conf
from workflows.handlers.registry import NodeContext


@dataclass(frozen=True)
class Invocation:
    """One handler call: which node attempt, in which process, when (Unix seconds)."""

    execution_id: str
    node_id: str
    attempt: int
    handler: str
    pid: int
    host: str
    at: float


def record(handler: str, context: NodeContext) -> None:
    """Append the invocation to the ledger, when there is one (an invocation hook of the registry)."""
    path = conf().invocation_ledger_path
    if not path:
        return
    host = socket.gethostname()
    entry = Invocation(
        context.execution_id, context.node_id, context.attempt, handler, os.getpid(), host, time.time()
    )
    os.write(_descriptor(path), (json.dumps(asdict(entry)) + "\n").encode())


@cache
def _descriptor(path: str) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def read(path: Path) -> list[Invocation]:
    """Every invocation in the ledger, in the order written; none when it does not exist."""
    if not path.exists():
        return []
    return [Invocation(**json.loads(line)) for line in path.read_text().splitlines() if line]


def beyond_at_least_once(
    invocations: Iterable[Invocation],
    killed_pids: Collection[int] = (),
    retried_attempts: Collection[tuple[str, str, int]] = (),
) -> list[Invocation]:
    """The invocations no fault or retry excuses: each after the first of its node, unless the
    invocation just before it ran an earlier attempt, in a process that was killed (at-least-once
    allows the next attempt to run again then) or whose failure the retry policy answered
    (execution id, node id, attempt in `retried_attempts`). The same attempt invoked twice is
    never excused: the claim exists to refuse a second copy."""
    latest: dict[tuple[str, str], Invocation] = {}
    unexcused = []
    for entry in sorted(invocations, key=lambda entry: entry.at):
        previous = latest.get((entry.execution_id, entry.node_id))
        if previous is not None and not (
            entry.attempt > previous.attempt
            and (
                previous.pid in killed_pids
                or (previous.execution_id, previous.node_id, previous.attempt) in retried_attempts
            )
        ):
            unexcused.append(entry)
        latest[(entry.execution_id, entry.node_id)] = entry
    return unexcused
