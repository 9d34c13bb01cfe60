"""What a worker's heartbeat says it holds: claimed attempts, how long they ran, whether finished."""

from workers import heartbeat


def payload(node_id: str, attempt: int = 1, timeout_s: float | None = 30.0) -> dict:
    return {"execution_id": "e1", "node_id": node_id, "attempt": attempt, "timeout_seconds": timeout_s}


def test_a_claimed_attempt_is_held_until_released_and_says_when_its_handler_finished() -> None:
    held = heartbeat.hold([payload("a"), payload("b", 2, None)])
    try:
        assert held == [("e1", "a", 1), ("e1", "b", 2)]
        heartbeat.finished(("e1", "a", 1))
        shown = {tuple(entry[:3]): entry[3:] for entry in heartbeat.held()}
        assert set(shown) == {("e1", "a", 1), ("e1", "b", 2)}
        running_s, timeout_s, finished = shown[("e1", "a", 1)]
        assert 0 <= running_s < 5 and timeout_s == 30.0 and finished is True
        assert shown[("e1", "b", 2)][1:] == [None, False]
        heartbeat.release([("e1", "a", 1)])
        assert [tuple(entry[:3]) for entry in heartbeat.held()] == [("e1", "b", 2)]
    finally:
        heartbeat.release(held)
    assert heartbeat.held() == []
