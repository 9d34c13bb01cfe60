"""The invocation ledger: every handler call is one JSON line when WORKFLOW_INVOCATION_LEDGER is
set, whole even when threads write at once; nothing is written when it is not set."""

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools import ledger
from workflows.conf import conf
from workflows.handlers.registry import NodeContext, run_handler


@pytest.fixture
def ledger_setting(settings: Any) -> Iterator[Any]:
    """Lets a test set WORKFLOW_INVOCATION_LEDGER; the configuration is read again around it."""
    conf.cache_clear()
    yield settings
    conf.cache_clear()


def use_ledger(settings: Any, path: str) -> None:
    settings.WORKFLOWS = {**settings.WORKFLOWS, "INVOCATION_LEDGER_PATH": path}
    conf.cache_clear()


def context(node_id: str, attempt: int = 1) -> NodeContext:
    return NodeContext(execution_id="e1", node_id=node_id, attempt=attempt, config={"topic": "t"})


def test_every_handler_invocation_is_one_line_even_from_many_threads(
    ledger_setting: Any, tmp_path: Path
) -> None:
    path = tmp_path / "ledger.jsonl"
    use_ledger(ledger_setting, str(path))
    threads = [
        threading.Thread(target=lambda index=index: run_handler("input", context(f"n{index}")))
        for index in range(40)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    run_handler("output", context("n0", attempt=2))
    invocations = ledger.read(path)
    assert sorted((entry.node_id, entry.attempt) for entry in invocations) == sorted(
        [(f"n{index}", 1) for index in range(40)] + [("n0", 2)]
    )
    assert {entry.handler for entry in invocations} == {"input", "output"}
    assert all(entry.execution_id == "e1" and entry.pid > 0 and entry.at > 0 for entry in invocations)


def test_no_ledger_is_written_when_it_is_not_configured(ledger_setting: Any, tmp_path: Path) -> None:
    use_ledger(ledger_setting, "")
    run_handler("input", context("n0"))
    assert list(tmp_path.iterdir()) == []


def entry(node_id: str, pid: int, at: float, attempt: int = 1) -> ledger.Invocation:
    return ledger.Invocation("e1", node_id, attempt, "llm", pid, "host", at)


def test_a_second_invocation_is_excused_only_after_one_on_a_killed_worker_or_a_retried_failure() -> None:
    """A looser rule (any earlier invocation on a killed worker or retried) hid the duplicates a
    broken claim or reconciler makes after the first fault of a node."""
    invocations = [
        entry("a", 10, 1.0),
        entry("a", 20, 2.0, attempt=2),  # the first ran on pid 10, which was killed: excused
        entry("b", 20, 1.5),
        entry("b", 20, 2.5, attempt=2),  # no kill explains it
        entry("c", 20, 3.0),
        entry("c", 10, 3.5, attempt=2),  # pid 10 ran it second: the first, on 20, was not killed
        entry("d", 30, 1.0),
        entry("e", 30, 1.0),
        entry("e", 30, 2.0, attempt=2),  # attempt 1 failed and was retried: excused
        entry("e", 30, 3.0, attempt=3),  # attempt 2 was not retried (1 was, earlier): not excused
        entry("f", 10, 1.0),
        entry("f", 20, 2.0, attempt=2),  # after a kill: excused
        entry("f", 30, 3.0, attempt=2),  # the same attempt again: never excused
    ]
    retried = {("e1", "e", 1)}

    def found(**faults: Any) -> list[ledger.Invocation]:
        return sorted(ledger.beyond_at_least_once(invocations, **faults), key=invocations.index)

    assert found(killed_pids={10}, retried_attempts=retried) == [
        invocations[3],
        invocations[5],
        invocations[9],
        invocations[12],
    ]
    assert found(retried_attempts=retried) == [
        invocations[1],
        invocations[3],
        invocations[5],
        invocations[9],
        invocations[11],
        invocations[12],
    ]
    assert len(found()) == 7
