"""Handlers run on reused threads, and a timeout abandons exactly the thread that overran."""

import threading
from typing import Any

import pytest

from workers import tasks
from workers.handlers import NodeContext

CONTEXT = NodeContext(execution_id="e", node_id="n", attempt=1, config={})


def runner_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if isinstance(thread, tasks._Runner)]


@pytest.fixture
def handler(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What the fake handler does, by the handler name it is called with."""
    behaviour: dict[str, Any] = {}

    def run_handler(name: str, context: NodeContext) -> Any:
        return behaviour[name](context)

    monkeypatch.setattr(tasks, "run_handler", run_handler)
    return behaviour


def test_outputs_and_failures_come_back_and_the_thread_is_reused(handler: dict[str, Any]) -> None:
    handler["ok"] = lambda context: {"node": context.node_id}
    handler["bad"] = lambda context: 1 / 0
    assert tasks.run_with_timeout("ok", CONTEXT, 5) == ({"node": "n"}, "")
    before = runner_threads()
    for _ in range(50):
        assert tasks.run_with_timeout("ok", CONTEXT, 5) == ({"node": "n"}, "")
        assert tasks.run_with_timeout("bad", CONTEXT, 5) == (None, "ZeroDivisionError: division by zero")
    assert len(runner_threads()) <= len(before) + 1


def test_an_overrunning_handler_times_out_and_its_thread_is_not_reused(handler: dict[str, Any]) -> None:
    release = threading.Event()
    ran_on: list[threading.Thread] = []

    def slow(context: NodeContext) -> str:
        ran_on.append(threading.current_thread())
        release.wait(10)
        return "late"

    handler["slow"] = slow
    handler["ok"] = lambda context: threading.current_thread()
    assert tasks.run_with_timeout("slow", CONTEXT, 0.05) == (None, "timed out after 0.05s")
    served_by, error = tasks.run_with_timeout("ok", CONTEXT, 5)  # the hung thread is not waited for
    assert error == "" and served_by is not ran_on[0]
    release.set()
    ran_on[0].join(5)
    assert not ran_on[0].is_alive()  # it ended after its late handler instead of going back to work


def test_a_handler_that_exits_fails_its_node_at_once(handler: dict[str, Any]) -> None:
    def leave(context: NodeContext) -> None:
        raise SystemExit("bye")

    handler["leave"] = leave
    assert tasks.run_with_timeout("leave", CONTEXT, 30) == (None, "SystemExit: bye")
