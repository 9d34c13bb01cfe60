"""The reconciler's pure decisions: which attempts are lost, given heartbeats, the epoch and the queue."""

import json
import zlib

from workflows import task_queue
from workflows.scheduler.reconciler import (
    EVERY_EXECUTION,
    OBSERVATION_GAP_S,
    Beat,
    Held,
    Judge,
    Loss,
    Watch,
    attempts_in_message,
    dead,
    dead_worker_losses,
    gone_with_redis,
    held_attempts,
    overrun_losses,
    parse_beats,
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


def test_a_version_2_heartbeat_gives_start_times_by_the_workers_clock() -> None:
    """A claim publishes prepared entries that carry when the attempt started, by the clock of
    the beat's own `at`: read as seconds running, a 3 s node would have run for 55 years."""
    doc = {
        "v": 2,
        "worker": "w1@h",
        "at": 1_700_000_010.0,
        "held": [["e1", "a", 1, 1_700_000_007.5, 30, False]],
    }
    raw = {b"w1@h/1": json.dumps(doc).encode()}
    assert parse_beats(raw) == [Beat("w1@h/1", "w1@h", 1_700_000_010.0, (Held(A, 2.5, 30.0),))]


def watched(*reads: tuple[float, list[Beat]]) -> Watch:
    """A watch that read these heartbeats at these times of the scheduler's monotonic clock."""
    watch = Watch()
    for now, beats in reads:
        watch.observe(beats, now)
    return watch


def test_a_worker_is_dead_once_its_beat_is_unchanged_for_longer_than_dead_after_of_our_clock() -> None:
    # the workers' own clocks say nothing: one stamps an hour behind, one an hour ahead
    silent = beat("silent", 1000.0)
    reads = [(t, [beat("lagging", t - 3600.0), beat("ahead", t + 3600.0), silent]) for t in range(11)]
    watch = watched(*((float(t), beats) for t, beats in reads))
    latest = reads[-1][1]
    assert dead(latest, watch, now=10.0, dead_after_s=10.0) == []  # silent for exactly 10 s
    watch.observe(latest, 10.5)
    assert dead(latest, watch, now=10.5, dead_after_s=10.0) == [silent]


def test_a_beat_first_seen_counts_from_then_however_old_its_own_stamp() -> None:
    old = beat("w1", 5.0)  # written long ago by the worker's clock: a scheduler that just started
    watch = watched((1000.0, [old]), (1004.0, [old]))
    assert watch.silent_s(old, 1004.0) == 4.0
    assert dead([old], watch, now=1004.0, dead_after_s=3.0) == [old]
    assert watch.silent_s(beat("w2", 0.0), 1004.0) == 0.0  # never seen: no silence observed


def test_a_failed_read_or_a_gap_between_reads_restarts_the_observation() -> None:
    stale = beat("w1", 50.0)  # a live worker's retried beat has not landed yet
    watch = watched(*((float(t), [stale]) for t in range(0, 9)))
    watch.restart()  # Redis could not be read
    watch.observe([stale], 9.0)
    watch.observe([stale], 18.0 - OBSERVATION_GAP_S)
    assert watch.silent_s(stale, 18.0 - OBSERVATION_GAP_S) == 9.0 - OBSERVATION_GAP_S
    assert dead([stale], watch, now=18.0 - OBSERVATION_GAP_S, dead_after_s=10.0) == []
    watch.observe([stale], 18.0 + 0.1)  # the scheduler stalled longer than the gap
    assert watch.silent_s(stale, 18.1) == 0.0


def test_a_heartbeat_gone_from_the_hash_is_forgotten() -> None:
    w1, w2 = beat("w1", 1.0), beat("w2", 1.0)
    watch = watched((0.0, [w1, w2]), (1.0, [w2]), (2.0, [w1, w2]))
    assert watch.silent_s(w1, 4.0) == 2.0 and watch.silent_s(w2, 4.0) == 4.0


def test_every_attempt_a_dead_worker_held_is_lost_received_or_running() -> None:
    losses = dead_worker_losses(beat("w1", 0, Held(A, 3.0, 10.0), Held(B)), held_live=set())
    assert [loss.attempt for loss in losses] == [A, B]
    assert losses[0].reason == "its worker w1 stopped sending heartbeats"


def test_what_a_dead_worker_held_and_a_live_worker_holds_now_is_not_lost() -> None:
    # A was received by the dead worker, redelivered by the broker and claimed by a live worker
    assert dead_worker_losses(beat("w1", 0, Held(A), Held(B)), held_live={A, C}) == [
        Loss(B, "its worker w1 stopped sending heartbeats")
    ]


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
