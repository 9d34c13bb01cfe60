"""The soak: many random executions on a private stack while faults are injected on a schedule.

Executions of seeded random DAGs are submitted at a steady rate to a stack with its own Redis and
Kafka, with a share of poison workflows (a node config over the submit limit, refused; a template
that amplifies a large output past the resolved-config limit, failing only its execution); meanwhile a Celery
worker is SIGKILLed, the scheduler is SIGKILLed and restarted, Redis is restarted empty, Kafka is
restarted and malformed task.complete messages are published, in turn. Afterwards every execution
is checked against what it was designed to do (some are designed to fail), its event history is
searched for nodes that completed more than once, and the invocation ledger (devtools/ledger.py)
for handler invocations beyond at-least-once: a node's handler run again when no earlier run of it
was on a worker the soak killed or failed and was retried. `manage.py soak` prints the tally;
lost, duplicated, beyond at-least-once and scheduler crashes must be zero.
"""

import itertools
import json
import random
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

import requests
from confluent_kafka import Producer
from django.conf import settings

from devtools.devstack import Stack, ignore_kafka_error, start_stack, wait_until
from devtools.ledger import beyond_at_least_once
from workflows import signatures
from workflows.core.dag import WorkflowSpec, parse_workflow
from workflows.core.templates import resolve
from workflows.handlers.registry import HandlerError, NodeContext, handler_names, run_handler
from workflows.messages import TASK_COMPLETE
from workflows.models import TERMINAL_EXECUTION_STATUSES, ExecutionStatus, NodeStatus

FAULTS = ("worker-kill", "scheduler-kill", "redis-restart", "kafka-restart", "malformed-report")
WORKERS = ("worker", "worker2")
# Template fields each handler's output is sure to have (output nodes are never referenced).
REFERENCED_FIELD = {"input": "topic", "llm": "prompt", "call_external_service": "url"}
MIN_NODES, MAX_NODES = 3, 8
MAX_LATENCY_S = 1.0
FAILING_SHARE = 0.1
FLAKY_SHARE = 0.1
FLAKY_RETRY = {"max_attempts": 3, "backoff_seconds": 0.2, "jitter": False}
SUBMIT_RETRY_S = 0.5
SUBMIT_ATTEMPTS = 20
POLL_INTERVAL_S = 1.0
WORKER_RESTART_DELAY_S = 2.0
WORKER_HUNT_S = 10.0
POISON_SHARE = 0.05
POISON_CONFIG_BYTES = 1_500_000  # the request that stopped the scheduler for everyone
AMPLIFIED_SHARE = 0.03
AMPLIFIED_BYTES = 200_000  # under the submit limit, three copies over the resolved limit
MALFORMED_WATCH_S = 10.0
KAFKA_FLUSH_S = 30.0


def malformed_reports(execution_id: str) -> list[bytes]:
    """task.complete values of the wrong shape or type, each of which crash-looped the scheduler
    (issue #11 point 3), about a real execution so that they land among its reports."""
    report = {"execution_id": execution_id, "node_id": "n1", "attempt": 1, "status": NodeStatus.COMPLETED}
    wrong = [
        {**report, "execution_id": "not-a-uuid"},
        {**report, "node_id": ["n1"]},
        {**report, "started_at": 5},
        {**report, "attempt": "one"},
    ]
    return [json.dumps(value).encode() for value in wrong] + [b"[1, 2, 3]", b"\xff not json"]


@dataclass(frozen=True)
class SoakConfig:
    """How big the soak is and how hard it is hit."""

    executions: int = 500
    seed: int = 1
    rate_per_s: float = 2.0
    fault_every_s: float = 30.0
    faults: tuple[str, ...] = FAULTS
    max_faults: int | None = None
    node_timeout_s: float = 30.0
    finish_deadline_s: float = 600.0

    @classmethod
    def quick(cls, seed: int = 1) -> "SoakConfig":
        """A few executions and one fault: proves the soak itself works, in under a minute."""
        return cls(
            executions=8,
            seed=seed,
            rate_per_s=4.0,
            fault_every_s=1.0,
            faults=("redis-restart",),
            max_faults=1,
            node_timeout_s=5.0,
        )


@dataclass(frozen=True)
class Planned:
    """One submitted execution and what it was designed to do."""

    execution_id: str
    workflow: dict[str, Any]
    failing_node: str | None
    expected_error: str = "HTTP 500"

    @property
    def expected_status(self) -> str:
        return ExecutionStatus.FAILED if self.failing_node else ExecutionStatus.COMPLETED


@dataclass
class Tally:
    """What the soak found; `verdict_ok` says whether the guarantees held."""

    submitted: int = 0
    completed: int = 0
    failed_as_expected: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    submit_errors: list[str] = field(default_factory=list)
    nodes_lost_and_rerun: int = 0
    retries: int = 0
    invocations: int = 0
    beyond_at_least_once: list[str] = field(default_factory=list)
    reruns_excused: int = 0
    poison_submitted: int = 0
    amplified_submitted: int = 0
    scheduler_crashes: list[str] = field(default_factory=list)
    faults: Counter = field(default_factory=Counter)

    @property
    def verdict_ok(self) -> bool:
        return not (
            self.lost
            or self.duplicated
            or self.wrong
            or self.submit_errors
            or self.beyond_at_least_once
            or self.scheduler_crashes
        )

    def lines(self) -> list[str]:
        rows = [
            ("executions submitted", self.submitted),
            ("completed", self.completed),
            ("failed as expected", self.failed_as_expected),
            ("lost", len(self.lost)),
            ("duplicated node effects", len(self.duplicated)),
            ("invocations beyond at-least-once", len(self.beyond_at_least_once)),
            ("scheduler crashes", len(self.scheduler_crashes)),
            ("wrong outcome", len(self.wrong)),
            ("submit errors", len(self.submit_errors)),
            ("node attempts lost and re-run", self.nodes_lost_and_rerun),
            ("node retries after a failure", self.retries),
            ("handler invocations", self.invocations),
            ("re-runs after a kill or a retry", self.reruns_excused),
            ("poison workflows submitted (refused at submit)", self.poison_submitted),
            ("amplifying workflows submitted (fail at run time)", self.amplified_submitted),
        ]
        lines = [f"{label:<32}{value:>6}" for label, value in rows]
        lines.append(
            "faults injected: " + ", ".join(f"{kind} x{count}" for kind, count in self.faults.items())
        )
        lines.extend(f"  lost: {item}" for item in self.lost)
        lines.extend(f"  duplicated: {item}" for item in self.duplicated)
        lines.extend(f"  beyond at-least-once: {item}" for item in self.beyond_at_least_once)
        lines.extend(f"  scheduler crash: {item}" for item in self.scheduler_crashes)
        lines.extend(f"  wrong: {item}" for item in self.wrong)
        lines.extend(f"  submit error: {item}" for item in self.submit_errors)
        return lines


def random_workflow(rng: random.Random, name: str, timeout_s: float) -> tuple[dict[str, Any], str | None]:
    """A random DAG: an input root, mocked calls that read their parents' outputs through
    templates, an output node gathering the leaves. Some have a node that fails for good (HTTP
    500, no retry); some a node that fails once and succeeds on retry. Returns the workflow and
    the node designed to fail, if any."""
    count = rng.randint(MIN_NODES, MAX_NODES)
    nodes: list[dict[str, Any]] = [
        {"id": "n0", "handler": "input", "config": {"topic": f"topic-{rng.randrange(10**6)}"}}
    ]
    for index in range(1, count - 1):
        parents = rng.sample(nodes, k=min(len(nodes), rng.choice((1, 1, 2))))
        nodes.append(call_node(rng, f"n{index}", parents))
    children = {dep for node in nodes for dep in node.get("dependencies", ())}
    leaves = [node["id"] for node in nodes if node["id"] not in children]
    nodes.append({"id": f"n{count - 1}", "handler": "output", "dependencies": leaves})
    failing = None
    calls = [node for node in nodes if node["handler"] in ("llm", "call_external_service")]
    draw = rng.random()
    if calls and draw < FAILING_SHARE:
        victim = rng.choice(calls)
        victim["handler"] = "call_external_service"
        victim["config"] = {
            **victim["config"],
            "url": f"http://down.example/{victim['id']}",
            "status_code": 500,
        }
        failing = victim["id"]
    elif calls and draw < FAILING_SHARE + FLAKY_SHARE:
        flaky = rng.choice(calls)
        flaky["config"]["fail_attempts"] = 1
        flaky["retry"] = FLAKY_RETRY
    workflow = {"name": name, "defaults": {"timeout_seconds": timeout_s}, "dag": {"nodes": nodes}}
    return workflow, failing


def poison_workflow(name: str) -> dict[str, Any]:
    """A workflow whose one node's config is over any sane size limit."""
    return {
        "name": name,
        "dag": {"nodes": [{"id": "big", "handler": "llm", "config": {"prompt": "x" * POISON_CONFIG_BYTES}}]},
    }


def amplified_workflow(name: str) -> dict[str, Any]:
    """A workflow that passes the submit limits but whose node `amplify` repeats a large upstream
    value past WORKFLOW_MAX_RESOLVED_CONFIG_BYTES: only that execution may fail, naming the limit."""
    quoted = "{{ source.topic }}"
    return {
        "name": name,
        "dag": {
            "nodes": [
                {"id": "source", "handler": "input", "config": {"topic": "y" * AMPLIFIED_BYTES}},
                {
                    "id": "amplify",
                    "handler": "llm",
                    "dependencies": ["source"],
                    "config": {"prompt": quoted * 3},
                },
                {"id": "gather", "handler": "output", "dependencies": ["amplify"]},
            ]
        },
    }


def poison_problem(response: requests.Response) -> str | None:
    """What is wrong with the API's answer to a poison workflow; None when it is as expected."""
    if (
        400 <= response.status_code < 500
        and "big" in response.text
        and "WORKFLOW_MAX_CONFIG_BYTES" in response.text
    ):
        return None
    return (
        f"HTTP {response.status_code} (expected a 4xx naming node 'big' and the limit): {response.text[:200]}"
    )


def call_node(rng: random.Random, node_id: str, parents: list[dict[str, Any]]) -> dict[str, Any]:
    """An llm or external-call node whose config quotes its first parent's output."""
    source = parents[0]
    quoted = f"{{{{ {source['id']}.{REFERENCED_FIELD[source['handler']]} }}}}"
    latency = round(rng.uniform(0, MAX_LATENCY_S), 3)
    if rng.random() < 0.5:
        config: dict[str, Any] = {"prompt": f"{node_id} about {quoted}", "mock_latency_seconds": latency}
        handler = "llm"
    else:
        config = {"url": f"http://svc.example/{node_id}?q={quoted}", "mock_latency_seconds": latency}
        handler = "call_external_service"
    return {"id": node_id, "handler": handler, "dependencies": [p["id"] for p in parents], "config": config}


def expected_outputs(workflow: dict[str, Any]) -> dict[str, Any]:
    """Each node's output when every node runs once on the right inputs: the handlers run here,
    without their mock latency, on the templates resolved from the expected parent outputs.
    Nodes that fail for good, and those below them, are left out."""
    spec = parse_workflow(workflow, handlers=handler_names())
    outputs: dict[str, Any] = {}
    for node in spec.nodes:
        if not set(node.dependencies) <= outputs.keys():
            continue
        config = resolve(node.config, outputs)
        if node.handler != "input":
            config = {**config, "mock_latency_seconds": 0}
        attempts = config.get("fail_attempts", 0) if isinstance(config.get("fail_attempts"), int) else 0
        context = NodeContext(
            execution_id="",
            node_id=node.id,
            attempt=attempts + 1,
            config=config,
            upstream={dep: outputs[dep] for dep in node.dependencies},
            load_input=lambda: dict(spec.input),
        )
        try:
            outputs[node.id] = run_handler(node.handler, context)
        except HandlerError:
            continue
    return outputs


def descendants(spec: WorkflowSpec, node_id: str) -> set[str]:
    found: set[str] = set()
    frontier = [node_id]
    while frontier:
        for child in spec.children.get(frontier.pop(), ()):
            if child not in found:
                found.add(child)
                frontier.append(child)
    return found


def completions(events: list[dict[str, Any]]) -> Counter:
    """How many times the scheduler recorded each node as completed."""
    return Counter(event["node_id"] for event in events if event["kind"] == "node_completed")


def outcome_problems(plan: Planned, status: dict[str, Any], results: dict[str, Any]) -> list[str]:
    """What is wrong with a finished execution, judged against its design; [] when it is right."""
    problems = []
    if status["status"] != plan.expected_status:
        problems.append(
            f"status {status['status']} (expected {plan.expected_status}; error {status['error']!r})"
        )
    if results["status"] != status["status"]:
        problems.append(f"the status endpoint says {status['status']}, the database {results['status']}")
    expected = expected_outputs(plan.workflow)
    for node_id, output in results["results"].items():
        if output != expected.get(node_id):
            problems.append(f"node {node_id} output {output!r} (expected {expected.get(node_id)!r})")
    if plan.failing_node is None:
        missing = set(expected) - set(results["results"])
        if missing:
            problems.append(f"nodes without output: {sorted(missing)}")
    else:
        spec = parse_workflow(plan.workflow, handlers=handler_names())
        below = descendants(spec, plan.failing_node) & set(results["results"])
        if status["node_states"].get(plan.failing_node) != NodeStatus.FAILED:
            problems.append(f"node {plan.failing_node} is {status['node_states'].get(plan.failing_node)}")
        if below:
            problems.append(f"nodes below the failed {plan.failing_node} completed: {sorted(below)}")
        if plan.expected_error not in (status["error"] or ""):
            problems.append(f"error {(status['error'] or '')[:200]!r} does not name {plan.expected_error}")
    return problems


class Soak:
    """Runs one soak on a started stack; `run` returns the tally."""

    def __init__(self, stack: Stack, config: SoakConfig, out: TextIO) -> None:
        self.stack = stack
        self.config = config
        self.out = out
        self.rng = random.Random(config.seed)
        self.name = f"soak-{uuid.uuid4().hex[:8]}"
        self.poison_rng = random.Random(config.seed + 1)  # apart, so a seed's DAGs stay the same
        self.plans: list[Planned] = []
        self.killed_pids: set[int] = set()
        self.retried_attempts: set[tuple[str, str, int]] = set()  # their failures were retried
        self.tally = Tally()
        self.started = time.monotonic()
        self.submitting = threading.Event()

    def say(self, text: str) -> None:
        self.out.write(f"[{time.monotonic() - self.started:7.1f}s] {text}\n")
        self.out.flush()

    def run(self) -> Tally:
        self.stack.start("worker2", command_of="worker")
        workflows = [
            random_workflow(self.rng, f"{self.name}-{index}", self.config.node_timeout_s)
            for index in range(self.config.executions)
        ]
        failing = sum(1 for _, node in workflows if node)
        self.say(f"{len(workflows)} executions planned, {failing} designed to fail; submitting")
        self.submitting.set()
        submitter = threading.Thread(target=self.submit_all, args=(workflows,), name="soak-submitter")
        submitter.start()
        self.inject_faults()
        submitter.join()
        self.say(f"all {len(self.plans)} submitted; waiting for them to finish")
        self.wait_finished()
        self.check()
        return self.tally

    def submit_all(self, workflows: list[tuple[dict[str, Any], str | None]]) -> None:
        interval = 1.0 / self.config.rate_per_s
        next_at = time.monotonic()
        try:
            for workflow, failing in workflows:
                time.sleep(max(0.0, next_at - time.monotonic()))
                next_at += interval
                draw = self.poison_rng.random()
                if draw < POISON_SHARE:
                    self.submit_poison(poison_workflow(f"poison-{uuid.uuid4().hex[:8]}"))
                elif draw < POISON_SHARE + AMPLIFIED_SHARE:
                    self.submit_amplified(amplified_workflow(f"amplified-{uuid.uuid4().hex[:8]}"))
                execution_id = self.submit(workflow)
                if execution_id:
                    self.plans.append(Planned(execution_id, workflow, failing))
        finally:
            self.submitting.clear()
        self.tally.submitted = len(self.plans)

    def submit(self, workflow: dict[str, Any]) -> str | None:
        """Submit and trigger in one call; a refused or failed call is a submit error."""
        for _ in range(SUBMIT_ATTEMPTS):
            try:
                response = self.stack.api.post_workflow(workflow, trigger=True)
            except requests.ConnectionError as exc:
                error = str(exc)
            else:
                if response.status_code == 201:
                    return response.json()["execution_id"]
                error = f"HTTP {response.status_code}: {response.text[:200]}"
            time.sleep(SUBMIT_RETRY_S)
        self.tally.submit_errors.append(f"{workflow['name']}: {error}")
        return None

    def submit_poison(self, workflow: dict[str, Any]) -> None:
        """Submit and trigger a poison workflow, which the API must refuse."""
        try:
            response = self.stack.api.post_workflow(workflow, trigger=True)
        except requests.ConnectionError as exc:
            self.tally.submit_errors.append(f"poison workflow: {exc}")
            return
        self.tally.poison_submitted += 1
        problem = poison_problem(response)
        if problem:
            self.tally.wrong.append(f"poison workflow: {problem}")

    def submit_amplified(self, workflow: dict[str, Any]) -> None:
        """Submit and trigger a workflow that fails at run time on a size limit."""
        execution_id = self.submit(workflow)
        if execution_id:
            self.plans.append(
                Planned(execution_id, workflow, "amplify", "WORKFLOW_MAX_RESOLVED_CONFIG_BYTES")
            )
            self.tally.amplified_submitted += 1

    def inject_faults(self) -> None:
        """One fault every `fault_every_s` while submitting, in turn; at the end of a short run,
        the faults not injected yet, so that each kind happens at least once."""
        schedule = itertools.cycle(self.config.faults)
        limit = self.config.max_faults
        while self.submitting.is_set() and (limit is None or sum(self.tally.faults.values()) < limit):
            if self.submitting_wait(self.config.fault_every_s):
                self.inject(next(schedule))
        for kind in self.config.faults:
            if not self.tally.faults[kind] and (limit is None or sum(self.tally.faults.values()) < limit):
                self.inject(kind)

    def submitting_wait(self, seconds: float) -> bool:
        """Wait while submissions go on; False when they ended first."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not self.submitting.is_set():
                return False
            time.sleep(0.1)
        return True

    def inject(self, kind: str) -> None:
        action: dict[str, Callable[[], str]] = {
            "worker-kill": self.kill_worker,
            "scheduler-kill": self.kill_scheduler,
            "redis-restart": self.restart_redis,
            "kafka-restart": self.restart_kafka,
            "malformed-report": self.publish_malformed,
        }
        started = time.monotonic()
        detail = action[kind]()
        self.tally.faults[kind] += 1
        self.say(f"fault {kind}: {detail} ({time.monotonic() - started:.1f}s)")

    def kill_worker(self) -> str:
        """SIGKILL the worker running the most nodes (waiting a little for one that runs any);
        a replacement starts a little later."""
        try:
            busy = wait_until(self.busy_workers, WORKER_HUNT_S, "a worker running a node", 0.1)
        except AssertionError:
            busy = {}
        victim = max(WORKERS, key=lambda name: busy.get(name, 0))
        self.killed_pids.add(self.stack.processes[victim].pid)
        self.stack.stop(victim, signal.SIGKILL)
        time.sleep(WORKER_RESTART_DELAY_S)
        self.stack.start(victim, command_of="worker")
        return f"SIGKILL {victim} while it ran {busy.get(victim, 0)} node(s); a new {victim} started"

    def busy_workers(self) -> dict[str, int] | None:
        """How many nodes each worker runs, as the status endpoint shows; None when all are idle."""
        running = self.running_executions()
        busy = {name: len(self.stack.running_nodes(name, running)) for name in WORKERS}
        return busy if any(busy.values()) else None

    def kill_scheduler(self) -> str:
        self.stack.stop("scheduler", signal.SIGKILL)
        self.stack.start("scheduler")
        return "SIGKILL scheduler, started again"

    def restart_redis(self) -> str:
        assert self.stack.redis is not None
        self.stack.redis.stop(signal.SIGKILL)
        self.stack.redis.start()
        return "SIGKILL redis, started again empty"

    def restart_kafka(self) -> str:
        assert self.stack.kafka is not None
        self.stack.kafka.restart()
        return "stopped kafka, started it again on the same data"

    def publish_malformed(self) -> str:
        """Publish every kind of malformed report to task.complete, keyed by a running execution
        (so they land among real reports), then watch the scheduler: it must skip them, not exit."""
        running = self.running_executions()
        execution = running[0] if running else str(uuid.uuid4())
        env = self.stack.env
        bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS", settings.WORKFLOWS["KAFKA_BOOTSTRAP_SERVERS"])
        producer = Producer({"bootstrap.servers": bootstrap, "error_cb": ignore_kafka_error})
        topic = f"{env['KAFKA_TOPIC_PREFIX']}{TASK_COMPLETE}"
        reports = malformed_reports(execution)
        for value in reports:  # signed, so that the scheduler checks their fields, not only the signature
            producer.produce(
                topic, key=execution.encode(), value=value, headers=signatures.header(TASK_COMPLETE, value)
            )
        if producer.flush(KAFKA_FLUSH_S):
            return "could not publish the malformed reports (Kafka did not acknowledge them)"
        deadline = time.monotonic() + MALFORMED_WATCH_S
        while time.monotonic() < deadline:
            if not self.stack.alive("scheduler"):
                self.tally.scheduler_crashes.append(f"exited after malformed reports keyed {execution}")
                self.stack.stop("scheduler")
                self.stack.start("scheduler")
                return f"{len(reports)} published; the scheduler EXITED (started again)"
            time.sleep(0.2)
        return f"{len(reports)} published; the scheduler still runs after {MALFORMED_WATCH_S:g}s"

    def running_executions(self) -> list[str]:
        """Executions of this soak that the database says are running (newest first, one page)."""
        response = self.stack.api.get("/workflows", params={"name": self.name, "status": "running"})
        return [row["execution_id"] for row in response.json()["results"]] if response.ok else []

    def unfinished(self) -> int:
        return sum(self.stack.api.count(name=self.name, status=status) for status in ("pending", "running"))

    def wait_finished(self) -> None:
        try:
            wait_until(
                lambda: self.unfinished() == 0,
                self.config.finish_deadline_s,
                "every execution to finish",
                POLL_INTERVAL_S,
            )
        except AssertionError as exc:
            self.say(str(exc))

    def check(self) -> None:
        for plan in self.plans:
            state = self.stack.status(plan.execution_id)
            events = self.stack.events(plan.execution_id)
            self.retried_attempts.update(  # also of a lost execution: its retries are no duplicates
                (plan.execution_id, event["node_id"], event["detail"].get("attempt"))
                for event in events
                if event["kind"] == "node_retry"
            )
            if state["status"] not in TERMINAL_EXECUTION_STATUSES:
                self.tally.lost.append(f"{plan.execution_id} still {state['status']}")
                continue
            repeated = {node: count for node, count in completions(events).items() if count > 1}
            if repeated:
                self.tally.duplicated.append(f"{plan.execution_id} node_completed {repeated}")
            kinds = Counter(event["kind"] for event in events)
            self.tally.nodes_lost_and_rerun += kinds["node_lost"]
            self.tally.retries += kinds["node_retry"]
            results = self.stack.api.get(f"/workflows/{plan.execution_id}/results").json()
            problems = outcome_problems(plan, state, results)
            if problems:
                self.tally.wrong.append(f"{plan.execution_id}: {'; '.join(problems)}")
            elif state["status"] == ExecutionStatus.COMPLETED:
                self.tally.completed += 1
            else:
                self.tally.failed_as_expected += 1
        self.check_ledger()

    def check_ledger(self) -> None:
        """Count effects: every handler invocation of this soak's executions, and those beyond
        at-least-once (a re-run that neither a worker kill nor a retried failure explains)."""
        ours = {plan.execution_id for plan in self.plans}
        invocations = [entry for entry in self.stack.invocations() if entry.execution_id in ours]
        self.tally.invocations = len(invocations)
        nodes = {(entry.execution_id, entry.node_id) for entry in invocations}
        unexcused = beyond_at_least_once(invocations, self.killed_pids, self.retried_attempts)
        self.tally.reruns_excused = len(invocations) - len(nodes) - len(unexcused)
        self.tally.beyond_at_least_once = [
            f"{entry.execution_id} node {entry.node_id} attempt {entry.attempt} "
            f"({self.stack.process_names.get(entry.pid, entry.pid)})"
            for entry in unexcused
        ]


def run_soak(config: SoakConfig, out: TextIO) -> Tally:
    """Start a stack with its own Redis and Kafka (those the faults restart), soak it, stop it."""
    started = time.monotonic()
    out.write(
        f"soak: {config.executions} executions of random DAGs, seed {config.seed}, {config.rate_per_s}/s, "
        f"a fault every {config.fault_every_s:g}s ({', '.join(config.faults)}), "
        f"node timeout {config.node_timeout_s:g}s\n"
    )
    stack = start_stack(
        {"WORKFLOW_NODE_TIMEOUT_SECONDS": str(config.node_timeout_s)},
        private_redis="redis-restart" in config.faults,
        private_kafka="kafka-restart" in config.faults,
    )
    out.write(f"stack up in {time.monotonic() - started:.1f}s; logs in {stack.workdir}\n")
    try:
        tally = Soak(stack, config, out).run()
    finally:
        stack.close()
    out.write("\n".join(tally.lines()) + "\n")
    out.write(f"elapsed {time.monotonic() - started:.1f}s\n")
    out.write(f"verdict: {'PASS' if tally.verdict_ok else 'FAIL'}\n")
    return tally
