"""The reconciler's pure decisions: which attempts are lost, given heartbeats, the epoch and the queue."""

import json
import zlib

from workflows import task_queue
from workflows.reconciler import (
    EVERY_EXECUTION,
    Beat,
    Held,
    Judge,
    Loss,
    attempts_in_message,
    dead,
    dead_worker_losses,
    gone_with_redis,
    held_attempts,
    overrun_losses,
    parse_beats,
    parse_epoch,
)

A = ("e1", "a", 1)
B = ("e1", "b", 2)
C = ("e2", "c", 1)


def beat(name: str, at: float, *held: Held) -> Beat:
    return Beat(f"{name}/x", name, at, held)


def test_heartbeats_are_read_and_an_unreadable_one_is_left_out() -> None:
    good = {
        "worker": "w1@h",
        "at": 100.5,
        "held": [["e1", "a", 1, 2.5, 30, False], ["e1", "b", 2, None, None, False]],
    }
    raw = {
        b"w1@h/1": json.dumps(good).encode(),
        b"w2@h/2": b"{not json",
        b"w3@h/3": json.dumps({"worker": "w3", "at": "soon", "held": []}).encode(),
        b"w4@h/4": json.dumps({"worker": "w4", "at": 1, "held": [["e1", "a"]]}).encode(),
    }
    assert parse_beats(raw) == [Beat("w1@h/1", "w1@h", 100.5, (Held(A, 2.5, 30.0), Held(B)))]


def test_a_worker_is_dead_once_silent_for_longer_than_dead_after() -> None:
    beats = [beat("fresh", 95.0), beat("edge", 90.0), beat("silent", 89.9)]
    assert [b.worker for b in dead(beats, now_s=100.0, dead_after_s=10.0)] == ["silent"]


def test_every_attempt_a_dead_worker_held_is_lost_received_or_running() -> None:
    losses = dead_worker_losses(beat("w1", 0, Held(A, 3.0, 10.0), Held(B)))
    assert [loss.attempt for loss in losses] == [A, B]
    assert losses[0].reason == "its worker w1 stopped sending heartbeats"


def test_on_a_live_worker_only_a_handler_still_running_past_timeout_and_grace_is_lost() -> None:
    live = [
        beat(
            "w1",
            0,
            Held(A, running_s=16.0, timeout_s=10.0),  # wedged
            Held(B, running_s=14.0, timeout_s=10.0),  # within the grace
            Held(C, running_s=100.0, timeout_s=10.0, finished=True),  # its report waits for Kafka
            Held(("e3", "d", 1)),  # received, waiting for a pool slot: no time limit yet
        )
    ]
    assert overrun_losses(live, grace_s=5.0) == [Loss(A, "it ran past its timeout of 10s on w1")]


def test_after_redis_started_empty_what_no_live_worker_holds_and_no_queue_carries_is_lost() -> None:
    losses = gone_with_redis([A, B, C], held={B}, in_queue={C})
    assert [loss.attempt for loss in losses] == [A]
    assert losses[0].reason.startswith("no live worker holds it and no queue carries it")
    assert held_attempts([beat("w", 0, Held(A), Held(C))]) == {A, C}


def test_the_epoch_is_its_creation_time() -> None:
    assert parse_epoch(json.dumps({"id": "x", "at": 12.5}).encode()) == 12.5
    assert parse_epoch(None) is None
    assert parse_epoch(b"garbage") is None


def test_the_attempts_a_queue_entry_carries_as_pushed_and_as_kombu_keeps_it_unacknowledged() -> None:
    payloads = [
        {"execution_id": "e1", "node_id": "a", "attempt": 1, "handler": "llm"},
        {"execution_id": "e1", "node_id": "b", "attempt": 2, "handler": "llm"},
    ]
    entry = task_queue.message(payloads)
    assert attempts_in_message(entry) == [A, B]
    assert attempts_in_message(json.dumps([json.loads(entry), "", "workflows"])) == [A, B]
    assert attempts_in_message(b"{}") == []
    assert attempts_in_message(b"not json") == []


def test_a_scheduler_judges_the_executions_of_the_partitions_it_owns_and_has_read() -> None:
    ids = [f"execution-{index}" for index in range(12)]
    judge = Judge(frozenset({1}), partitions=3)
    assert [i for i in ids if judge(i)] == [i for i in ids if zlib.crc32(i.encode()) % 3 == 1]
    assert not any(Judge(frozenset(), 0)(i) for i in ids)  # no partitions assigned yet
    assert all(EVERY_EXECUTION(i) for i in ids)
