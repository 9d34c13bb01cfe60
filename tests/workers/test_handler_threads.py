"""Handlers run concurrently on reused threads, reported as they finish; a timeout abandons
exactly the thread that overran."""

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devtools.devstack import wait_until
from workers import handler_threads
from workers.handler_threads import Job, run_all
from workflows.conf import conf
from workflows.handlers.registry import NodeContext


def job(handler: str, timeout_s: float | None = 5, node_id: str = "n") -> Job:
    return Job(handler, NodeContext(execution_id="e", node_id=node_id, attempt=1, config={}), timeout_s)


def run_one(handler: str, timeout_s: float | None = 5) -> tuple[Any, str]:
    [(_, output, error)] = list(run_all([job(handler, timeout_s)]))
    return output, error


def runner_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if isinstance(thread, handler_threads._Runner)]


@pytest.fixture
def handler(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What the fake handler does, by the handler name it is called with."""
    behaviour: dict[str, Any] = {}

    def run_handler(name: str, context: NodeContext) -> Any:
        return behaviour[name](context)

    monkeypatch.setattr(handler_threads, "run_handler", run_handler)
    return behaviour


def test_outputs_and_failures_come_back_and_the_thread_is_reused(handler: dict[str, Any]) -> None:
    handler["ok"] = lambda context: {"node": context.node_id}
    handler["bad"] = lambda context: 1 / 0
    assert run_one("ok") == ({"node": "n"}, "")
    before = runner_threads()
    for _ in range(50):
        assert run_one("ok") == ({"node": "n"}, "")
        assert run_one("bad", None) == (None, "ZeroDivisionError: division by zero")
    assert len(runner_threads()) <= len(before) + 1


def test_nodes_of_one_task_run_at_once_and_come_back_first_finished_first(handler: dict[str, Any]) -> None:
    together = threading.Barrier(3, timeout=5)  # passes only if all three run at the same time
    release_slow = threading.Event()

    def slow(context: NodeContext) -> str:
        together.wait()
        release_slow.wait(5)
        return "slow"

    def fast(context: NodeContext) -> str:
        together.wait()
        return context.node_id

    handler.update(slow=slow, fast=fast)
    outcomes = run_all([job("slow", node_id="s"), job("fast", node_id="f1"), job("fast", node_id="f2")])
    first_two = [next(outcomes), next(outcomes)]  # the slow node is still running
    assert sorted(output for _, output, _ in first_two) == ["f1", "f2"]
    release_slow.set()
    rest = [(found.context.node_id, output, error) for found, output, error in outcomes]
    assert rest == [("s", "slow", "")]


def test_an_overrunning_handler_times_out_alone_and_its_thread_is_not_reused(handler: dict[str, Any]) -> None:
    release, started = threading.Event(), threading.Event()
    ran_on: list[threading.Thread] = []

    def slow(context: NodeContext) -> str:
        ran_on.append(threading.current_thread())
        started.set()
        release.wait(10)
        return "late"

    handler["slow"] = slow
    handler["ok"] = lambda context: threading.current_thread()
    outcomes = {
        found.context.node_id: (output, error)
        for found, output, error in run_all([job("slow", 0.05, "s"), job("ok", 5, "o")])
    }
    assert outcomes["s"] == (None, "timed out after 0.05s")
    assert started.wait(5)
    assert outcomes["o"][1] == "" and outcomes["o"][0] is not ran_on[0]
    served_by, error = run_one("ok")  # the hung thread is not waited for
    assert error == "" and served_by is not ran_on[0]
    release.set()
    ran_on[0].join(5)
    assert not ran_on[0].is_alive()  # it ended after its late handler instead of going back to work


def test_a_handler_that_exits_fails_its_node_at_once(handler: dict[str, Any]) -> None:
    def leave(context: NodeContext) -> None:
        raise SystemExit("bye")

    handler["leave"] = leave
    assert run_one("leave", 30) == (None, "SystemExit: bye")


def test_an_exception_whose_message_fails_still_fails_its_node_at_once(handler: dict[str, Any]) -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no message")

    def broken(context: NodeContext) -> None:
        raise Unprintable

    handler["broken"] = broken
    assert run_one("broken", None) == (None, "Unprintable (its message could not be shown)")


@pytest.fixture
def cap_of_two(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """WORKFLOW_MAX_ABANDONED_HANDLERS 2, a fresh process state; yields the stops requested."""
    settings.WORKFLOWS = {**settings.WORKFLOWS, "MAX_ABANDONED_HANDLERS": "2"}
    conf.cache_clear()
    monkeypatch.setattr(handler_threads, "_retiring", threading.Event())
    yield []
    conf.cache_clear()


def hang_until(release: threading.Event) -> Callable[[NodeContext], str]:
    def hang(context: NodeContext) -> str:
        release.wait(10)  # ignores its timeout
        return "late"

    return hang


def test_abandoned_handlers_are_counted_while_they_run_and_no_longer_once_they_end(
    handler: dict[str, Any],
) -> None:
    release = threading.Event()
    handler["hang"] = hang_until(release)
    handler["ok"] = lambda context: "ok"
    before = handler_threads.abandoned_handlers()
    outcomes = list(run_all([job("hang", 0.05, "h1"), job("hang", 0.05, "h2"), job("ok", 5, "o")]))
    assert sorted(error for _, _, error in outcomes) == ["", "timed out after 0.05s", "timed out after 0.05s"]
    assert handler_threads.abandoned_handlers() == before + 2
    release.set()
    wait_until(lambda: handler_threads.abandoned_handlers() == before, 5, "the hung handlers to end")


def test_at_the_cap_of_abandoned_handlers_the_worker_is_stopped_once(
    handler: dict[str, Any], cap_of_two: list[str]
) -> None:
    release = threading.Event()
    handler["hang"] = hang_until(release)

    def stop() -> None:
        cap_of_two.append("stop")

    try:
        assert run_one("hang", 0.05) == (None, "timed out after 0.05s")
        assert not handler_threads.retire_if_too_many_abandoned(stop)  # one hung thread: below the cap
        assert run_one("hang", 0.05) == (None, "timed out after 0.05s")
        assert handler_threads.retire_if_too_many_abandoned(stop)
        assert not handler_threads.retire_if_too_many_abandoned(stop)  # asked once, not at every task
        assert cap_of_two == ["stop"]
    finally:
        release.set()
    wait_until(lambda: handler_threads.abandoned_handlers() == 0, 5, "the hung handlers to end")
