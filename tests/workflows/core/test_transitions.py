"""The state transitions the scheduler applies, driven directly: random DAGs, random orders of
completions, failures and losses; each decision comes from workflows.core.transitions."""

import random
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from workflows.core.dag import WorkflowSpec, parse_workflow
from workflows.core.retry import RetryPolicy
from workflows.core.transitions import (
    MAX_LOST_ATTEMPTS,
    Completed,
    Finish,
    GiveUp,
    Requeue,
    Retry,
    attempt_lost,
    is_current,
    node_completed,
    node_failed,
    node_given_up,
    ready_children,
    retry_delay,
)

HANDLERS = {"input": "input", "llm": "llm", "output": "output"}
OUTCOMES = ("complete", "fail", "lose")


@st.composite
def random_dags(draw: st.DrawFn, retries: bool = False) -> WorkflowSpec:
    """Random DAGs: edges only go from a lower to a higher index, then the nodes are shuffled;
    with `retries`, each node allows 1 to 3 attempts."""
    size = draw(st.integers(min_value=1, max_value=30))
    nodes = []
    for index in range(size):
        parents = draw(st.sets(st.integers(min_value=0, max_value=index - 1), max_size=4)) if index else set()
        node = {"id": f"n{index}", "handler": "llm", "dependencies": [f"n{p}" for p in sorted(parents)]}
        if retries:
            node["retry"] = {"max_attempts": draw(st.integers(1, 3)), "backoff_seconds": 0, "jitter": False}
        nodes.append(node)
    order = draw(st.permutations(nodes))
    return parse_workflow({"name": "random", "dag": {"nodes": list(order)}}, handlers=HANDLERS)


@dataclass
class Run:
    """An execution's state as the scheduler keeps it in its rows, changed only as the shipped
    decisions say; plus what happened, for the assertions."""

    spec: WorkflowSpec
    unfinished: dict[str, int] = field(init=False)
    status: dict[str, str] = field(init=False)
    attempt: dict[str, int] = field(init=False)
    lost: dict[str, int] = field(init=False)
    in_flight: list[tuple[str, int, bool]] = field(default_factory=list)  # node, attempt, redelivered
    completed: list[str] = field(default_factory=list)
    dispatched: list[tuple[str, set[str]]] = field(default_factory=list)  # node, completed before it
    counted_failures: dict[str, int] = field(default_factory=dict)
    endings: list[Finish] = field(default_factory=list)
    given_up: list[str] = field(default_factory=list)
    cancelled: bool = False

    def __post_init__(self) -> None:
        self.unfinished = {node.id: len(node.dependencies) for node in self.spec.nodes}
        self.status = {node.id: "pending" for node in self.spec.nodes}
        self.attempt = {node.id: 0 for node in self.spec.nodes}
        self.lost = {node.id: 0 for node in self.spec.nodes}
        for node_id, unfinished in self.unfinished.items():  # the start: the roots
            if unfinished == 0:
                self.queue(node_id)

    @property
    def running(self) -> bool:
        return not self.endings and not self.cancelled

    def queue(self, node_id: str) -> None:
        self.status[node_id] = "queued"
        self.attempt[node_id] += 1
        self.in_flight.append((node_id, self.attempt[node_id], False))
        self.dispatched.append((node_id, set(self.completed)))

    def finish(self, ending: Finish) -> None:
        self.endings.append(ending)
        if ending.failed:
            for node_id, status in self.status.items():
                if status == "pending":
                    self.status[node_id] = "skipped"

    def complete(self, node_id: str) -> None:
        self.status[node_id] = "completed"
        self.completed.append(node_id)
        pending_children = {}
        for child in self.spec.children[node_id]:
            self.unfinished[child] -= 1
            if self.status[child] == "pending":
                pending_children[child] = self.unfinished[child]
        decision = node_completed(
            pending_children,
            running=self.running,
            completed_nodes=len(self.completed),
            total_nodes=len(self.spec.nodes),
        )
        for child in decision.ready:
            self.queue(child)
        if decision.finish is not None:
            self.finish(decision.finish)

    def give_up(self, node_id: str, error: str) -> None:
        self.status[node_id] = "failed"
        self.given_up.append(node_id)
        ending = node_given_up(node_id, error, running=self.running)
        if ending is not None:
            self.finish(ending)

    def fail(self, node_id: str, rng: random.Random) -> None:
        counted = self.attempt[node_id] - self.lost[node_id]
        decision = node_failed(
            self.spec.node(node_id).retry, "boom", counted_attempts=counted, running=self.running, rng=rng
        )
        self.counted_failures[node_id] = self.counted_failures.get(node_id, 0) + 1
        if isinstance(decision, Retry):
            self.queue(node_id)
        else:
            self.give_up(node_id, decision.error)

    def lose(self, node_id: str) -> None:
        attempt, lost = self.attempt[node_id], self.lost[node_id]
        decision = attempt_lost(attempt, "worker died", lost_attempts=lost, running=self.running)
        if isinstance(decision, GiveUp):
            self.give_up(node_id, decision.error)
        else:
            self.lost[node_id] += 1
            self.queue(node_id)

    def cancel(self) -> None:
        """What the API's cancel does: every node not finished is CANCELLED."""
        self.cancelled = True
        for node_id, status in self.status.items():
            if status in ("pending", "queued"):
                self.status[node_id] = "cancelled"

    def report(self, node_id: str, attempt: int, outcome: str, rng: random.Random) -> None:
        """A worker's report of one of the node's attempts, or the reconciler's loss of it: only
        the attempt in flight changes anything."""
        if not is_current(self.attempt[node_id], self.status[node_id] == "queued", attempt):
            return
        if outcome == "complete":
            self.complete(node_id)
        elif outcome == "fail":
            self.fail(node_id, rng)
        else:
            self.lose(node_id)


def play(spec: WorkflowSpec, seed: int, weights: tuple[int, int, int]) -> Run:
    """Finish the attempts in flight in a random order, each with a random outcome; a fifth of
    the reports are delivered twice (Kafka delivers at least once), the copy later."""
    rng = random.Random(seed)
    run = Run(spec)
    while run.in_flight:
        node_id, attempt, redelivered = run.in_flight.pop(rng.randrange(len(run.in_flight)))
        outcome = rng.choices(OUTCOMES, weights)[0]
        if not redelivered and rng.random() < 0.2:
            run.in_flight.append((node_id, attempt, True))
        run.report(node_id, attempt, outcome, rng)
    return run


def descendants(spec: WorkflowSpec, node_id: str) -> set[str]:
    found, stack = set(), list(spec.children[node_id])
    while stack:
        child = stack.pop()
        if child not in found:
            found.add(child)
            stack.extend(spec.children[child])
    return found


def assert_dependency_order(run: Run) -> None:
    for node_id, completed_before in run.dispatched:
        missing = set(run.spec.node(node_id).dependencies) - completed_before
        assert not missing, f"{node_id} dispatched before {missing} completed"


@settings(max_examples=200, deadline=None)
@given(spec=random_dags(), seed=st.integers())
def test_every_node_runs_once_after_all_its_dependencies(spec: WorkflowSpec, seed: int) -> None:
    run = play(spec, seed, weights=(1, 0, 0))
    assert sorted(node_id for node_id, _ in run.dispatched) == sorted(node.id for node in spec.nodes)
    assert_dependency_order(run)
    assert run.endings == [Finish(failed=False)]


@settings(max_examples=300, deadline=None)
@given(
    spec=random_dags(retries=True),
    seed=st.integers(),
    weights=st.sampled_from([(6, 2, 1), (2, 2, 2), (1, 3, 0)]),
)
def test_failures_and_losses_keep_the_order_and_a_node_given_up_skips_its_descendants(
    spec: WorkflowSpec, seed: int, weights: tuple[int, int, int]
) -> None:
    run = play(spec, seed, weights)
    assert_dependency_order(run)
    assert len(set(run.completed)) == len(run.completed), "a node completed twice"
    assert len(run.endings) == 1, "the execution must end exactly once"
    (ending,) = run.endings
    assert ending.failed == bool(run.given_up)
    assert ending.failed or sorted(run.completed) == sorted(node.id for node in spec.nodes)
    if ending.failed:
        first = run.given_up[0]
        assert ending.error.startswith(f"node '{first}' failed: ")
        for descendant in descendants(spec, first):
            assert run.status[descendant] == "skipped", f"{descendant} ran after its ancestor {first} failed"
        assert all(status != "pending" for status in run.status.values()), "a node left PENDING"
    for node_id, failures in run.counted_failures.items():
        allowed = spec.node(node_id).retry.max_attempts  # type: ignore[union-attr]
        assert failures <= allowed, f"{node_id} failed {failures} times with {allowed} attempts"
    assert max(run.lost.values()) <= MAX_LOST_ATTEMPTS


@settings(max_examples=200, deadline=None)
@given(spec=random_dags(retries=True), seed=st.integers(), cancel_after=st.integers(0, 40))
def test_a_cancelled_execution_starts_nothing_and_ignores_late_reports(
    spec: WorkflowSpec, seed: int, cancel_after: int
) -> None:
    rng = random.Random(seed)
    run = Run(spec)
    for _ in range(cancel_after):
        if not run.in_flight or not run.running:
            break
        node_id, attempt, _ = run.in_flight.pop(rng.randrange(len(run.in_flight)))
        run.report(node_id, attempt, rng.choice(OUTCOMES), rng)
    if not run.running:
        return
    run.cancel()
    before = (len(run.dispatched), list(run.completed), dict(run.status))
    while run.in_flight:
        node_id, attempt, _ = run.in_flight.pop()
        run.report(node_id, attempt, rng.choice(OUTCOMES), rng)
    assert (len(run.dispatched), run.completed, run.status) == before
    assert run.endings == []


def test_fan_in_node_is_ready_only_after_its_last_parent() -> None:
    assert ready_children({"D": 1}) == []
    assert ready_children({"D": 0, "E": 2}) == ["D"]


def test_the_last_node_completes_the_execution_and_a_stopped_one_starts_nothing() -> None:
    assert node_completed({"B": 0}, running=True, completed_nodes=1, total_nodes=3) == Completed(["B"], None)
    last = Completed([], Finish(failed=False))
    assert node_completed({}, running=True, completed_nodes=3, total_nodes=3) == last
    assert node_completed({"B": 0}, running=False, completed_nodes=3, total_nodes=3) == Completed([], None)


def test_a_failure_is_retried_while_attempts_remain_and_the_execution_runs() -> None:
    policy = RetryPolicy(max_attempts=2, backoff_seconds=1.5, jitter=False)
    rng = random.Random(1)
    assert node_failed(policy, "boom", counted_attempts=1, running=True, rng=rng) == Retry(1.5)
    assert node_failed(policy, "boom", counted_attempts=2, running=True, rng=rng) == GiveUp("boom")
    assert node_failed(policy, "boom", counted_attempts=1, running=False, rng=rng) == GiveUp("boom")
    assert node_failed(None, "boom", counted_attempts=1, running=True, rng=rng) == GiveUp("boom")


def test_a_lost_attempt_is_requeued_until_the_node_was_lost_too_often() -> None:
    assert attempt_lost(3, "worker died", lost_attempts=MAX_LOST_ATTEMPTS - 1, running=True) == Requeue()
    gave_up = GiveUp("attempt 3 lost: worker died")
    assert attempt_lost(3, "worker died", lost_attempts=MAX_LOST_ATTEMPTS, running=True) == gave_up
    assert attempt_lost(3, "worker died", lost_attempts=0, running=False) == gave_up


def test_a_node_given_up_fails_a_running_execution_only() -> None:
    assert node_given_up("B", "boom", running=True) == Finish(failed=True, error="node 'B' failed: boom")
    assert node_given_up("B", "boom", running=False) is None


def test_only_the_attempt_in_flight_is_reported() -> None:
    assert is_current(2, True, 2)
    assert not is_current(2, True, 1)  # stale: a retry superseded it
    assert not is_current(2, False, 2)  # duplicate: applied already


def test_retry_delay_until_attempts_are_used_up() -> None:
    policy = RetryPolicy(max_attempts=3, backoff_seconds=1.0, backoff_multiplier=2.0, jitter=False)
    rng = random.Random(1)
    assert retry_delay(policy, 1, rng) == 1.0
    assert retry_delay(policy, 2, rng) == 2.0
    assert retry_delay(policy, 3, rng) is None
    assert retry_delay(None, 1, rng) is None
