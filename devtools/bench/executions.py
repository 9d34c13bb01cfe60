"""The benchmark's view of its executions through the stack's API: wait for them, read their timings."""

import time
from datetime import datetime
from typing import Any

from devtools.devstack import Stack
from workflows.models import ExecutionStatus

POLL_INTERVAL_S = 0.25


class ShapeTimeout(Exception):
    """A shape ran past its deadline; the report shows it as timed out instead of hanging."""


def epoch(text: str | None) -> float | None:
    """An ISO-8601 time from the API as seconds since the epoch."""
    return datetime.fromisoformat(text).timestamp() if text else None


def ensure_alive(stack: Stack) -> None:
    """Fail at once, instead of at the deadline, when a process of the stack has exited."""
    for process, popen in stack.processes.items():
        if popen.poll() is not None:
            raise RuntimeError(f"the stack's {process} exited with {popen.returncode}; see {stack.workdir}")


def wait_none_running(stack: Stack, name: str, deadline: float) -> None:
    """Wait until no execution named like `name` runs; ShapeTimeout past `deadline` (monotonic)."""
    while stack.api.count(name=name, status="running"):
        ensure_alive(stack)
        if time.monotonic() > deadline:
            raise ShapeTimeout(f"executions named {name!r} still running at the deadline")
        time.sleep(POLL_INTERVAL_S)


def finished_executions(stack: Stack, name: str) -> list[dict[str, Any]]:
    """The finished executions named like `name`; RuntimeError naming the first that did not complete."""
    rows = stack.api.executions(name=name)
    failed = [row for row in rows if row["status"] != ExecutionStatus.COMPLETED]
    if failed:
        raise RuntimeError(
            f"{len(failed)} of {len(rows)} executions did not complete: "
            f"{failed[0]['status']} {failed[0].get('error')}"
        )
    return rows
