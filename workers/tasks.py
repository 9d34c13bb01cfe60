"""The thin Celery task: run the handlers of the nodes it carries and report each outcome to Kafka."""

import json
import logging
import socket
import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from celery import Task, shared_task
from celery.signals import worker_process_init, worker_ready
from confluent_kafka import KafkaError, KafkaException
from django.conf import settings
from django.utils import timezone

from workers import heartbeat
from workers.handler_threads import Job, retire_if_too_many_abandoned, run_all
from workers.inputs import execution_input
from workflows import dead_letters, kafka_io, mirror, task_queue
from workflows.conf import conf
from workflows.core.limits import size_problem
from workflows.dead_letters import DeadLetter
from workflows.handlers.registry import NodeContext, handler_names
from workflows.messages import (
    RUN_NODE_TASK,
    RUN_NODES_TASK,
    TASK_COMPLETE,
    InvalidMessage,
    TaskComplete,
    TaskPayload,
    attempt_of,
    decode,
    encode,
    execution_id_of,
    node_id_of,
    validate_task_payload,
)
from workflows.models import NodeStatus

logger = logging.getLogger(__name__)
REPORT_RETRY_S = 1.0
CLAIM_TRIES = 3
CLAIM_BACKOFF_S = 0.2
SIGNED_REQUEST = "workers.signed_request:SignedRequest"


@worker_ready.connect
@worker_process_init.connect
def connect_producer(**kwargs: object) -> None:
    """Connect to Kafka before the first task, so the first report does not pay for it."""
    kafka_io.warm_up()


@shared_task(name=RUN_NODES_TASK, bind=True, Request=SIGNED_REQUEST)
def run_nodes(self: Task, payloads: list[dict[str, Any]]) -> None:
    """A task carries one node, or several when the scheduler readied more at once than it
    spreads over separate tasks (WORKFLOW_MIN_TASKS_PER_BATCH)."""
    refuse_unless_received(self)
    if not isinstance(payloads, list):
        payloads = [payloads]  # refused below, unless it is one payload
    worker = self.request.hostname or socket.gethostname()
    execute(*well_formed(payloads, worker), worker)


@shared_task(name=RUN_NODE_TASK, bind=True, Request=SIGNED_REQUEST)
def run_node(self: Task, payload: dict[str, Any]) -> None:
    """The one-node task of earlier versions, which were unsigned: its messages still queued when
    workers are upgraded are refused (workers/signed_request.py), and their nodes run again when
    the reconciler finds that nothing carries them."""
    refuse_unless_received(self)
    worker = self.request.hostname or socket.gethostname()
    execute(*well_formed([payload], worker), worker)


def refuse_unless_received(task: Task) -> None:
    """Run nodes only for a task received as such, whose signature the worker checked
    (workers/signed_request.py): Celery's built-in `celery.map` and `celery.starmap` call the
    task they name in-process, so a forged one of those would run forged nodes unchecked."""
    if task.request.called_directly:
        raise PermissionError(f"{task.name} runs only as a signed task of its own, not called by another")


def well_formed(payloads: list[Any], worker: str) -> tuple[list[TaskPayload], list[TaskComplete]]:
    """The payloads that keep the contract (workflows/messages.py) and name a handler this worker
    has, and a FAILED report for each other one whose node it can name (execution, node,
    attempt): an unknown handler (a rolling deploy adding one), a bad config or timeout would
    otherwise leave its node QUEUED with nothing to show it lost. All the others are dead-lettered
    too, and the task goes on with the rest and returns normally, so that it is acknowledged
    rather than redelivered."""
    known = handler_names()
    good: list[TaskPayload] = []
    refused, failures = [], []
    for payload in payloads:
        try:
            checked = validate_task_payload(payload)
            if checked["handler"] not in known:
                raise InvalidMessage("unknown_handler", f"no handler named {checked['handler'][:80]!r} here")
            good.append(checked)
        except InvalidMessage as exc:
            refused.append(refused_payload(payload, exc))
            failure = refusal_report(payload, exc, worker)
            if failure is not None:
                failures.append(failure)
    if refused:
        try:
            dead_letters.send(refused)
        except KafkaException as exc:  # the log above keeps them; the good payloads must not wait
            logger.error("could not dead-letter %d node payload(s): %s", len(refused), exc)
    return good, failures


def refusal_report(payload: Any, error: InvalidMessage, worker: str) -> TaskComplete | None:
    """The FAILED report of a refused payload, when its identity fields are valid."""
    try:
        identity = execution_id_of(payload), node_id_of(payload), attempt_of(payload)
    except (InvalidMessage, AttributeError, TypeError):
        return None
    now = timezone.now().isoformat()
    reason = f"the worker refused the node's payload ({error.reason}): {error}"
    return TaskComplete(
        *identity, NodeStatus.FAILED, error=reason, started_at=now, finished_at=now, worker=worker
    )


def refused_payload(payload: Any, error: InvalidMessage) -> DeadLetter:
    key = payload.get("execution_id") if isinstance(payload, dict) else None
    return DeadLetter(
        source=f"celery:{settings.CELERY_TASK_DEFAULT_QUEUE}",
        key=key.encode() if isinstance(key, str) else None,
        value=json.dumps(payload, default=str).encode(),
        reason=error.reason,
        detail=str(error),
    )


def execute(payloads: list[TaskPayload], failures: Sequence[TaskComplete], worker: str) -> None:
    """Run the nodes concurrently and report each outcome to task.complete as it comes, with the
    failures of the refused payloads; return (so that Celery acknowledges the task) only once
    Kafka has acknowledged every report. If the reports cannot be made, the claimed attempts stay
    in the heartbeat as overrunning, for the reconciler to declare lost, and the error escapes."""
    started_at = timezone.now().isoformat()
    held = heartbeat.hold(payloads)
    kept: set[heartbeat.Attempt] = set()
    try:
        mine = claimed(payloads, started_at, worker)
        kept = {heartbeat.attempt_of(payload) for payload in mine} & set(held)
        heartbeat.release(set(held) - kept)
        report_all(mine, failures, started_at, worker)
        kept = set()
    except BaseException:
        heartbeat.overran(kept)
        raise
    finally:
        heartbeat.release(set(held) - kept)


def report_all(
    payloads: list[TaskPayload], failures: Sequence[TaskComplete], started_at: str, worker: str
) -> None:
    """Run the claimed nodes; the heartbeat tells each finished handler from one still running.
    An error escaping the run (a thread that cannot start, say) fails the nodes not reported yet
    with it, rather than losing them."""
    publication = kafka_io.Publication()
    for failure in failures:
        send_report(publication, failure)
    unreported = {heartbeat.attempt_of(payload) for payload in payloads}
    try:
        jobs = [
            Job(payload["handler"], context(payload), payload.get("timeout_seconds")) for payload in payloads
        ]
        for job, output, error in run_all(jobs):
            attempt = (job.context.execution_id, job.context.node_id, job.context.attempt)
            heartbeat.finished(attempt)
            report = TaskComplete(
                *attempt,
                NodeStatus.FAILED if error else NodeStatus.COMPLETED,
                output=output,
                error=error,
                started_at=started_at,
                finished_at=timezone.now().isoformat(),
                worker=worker,
            )
            send_report(publication, report)
            unreported.discard(attempt)
    except Exception as exc:
        logger.exception("the worker failed running %d node(s); reporting them failed", len(unreported))
        finished_at = timezone.now().isoformat()
        for attempt in sorted(unreported):
            report = TaskComplete(*attempt, NodeStatus.FAILED, error=f"the worker failed: {exc!r}"[:2000])
            send_report(
                publication, replace(report, started_at=started_at, finished_at=finished_at, worker=worker)
            )
    deliver(publication)
    retire_if_too_many_abandoned()


def context(payload: TaskPayload) -> NodeContext:
    """The handler's view of a payload. The workflow input is read from the database when a
    handler first asks for it (once per execution in this process); tasks queued before it
    stopped travelling in payloads still carry it."""
    execution_id = payload["execution_id"]
    shipped = payload.get("input")
    return NodeContext(
        execution_id=execution_id,
        node_id=payload["node_id"],
        attempt=payload["attempt"],
        config=payload.get("config") or {},
        upstream=payload.get("upstream") or {},
        load_input=(lambda: shipped or {})
        if shipped is not None
        else (lambda: execution_input(execution_id)),
    )


def claimed(payloads: list[TaskPayload], started_at: str, worker: str) -> list[TaskPayload]:
    """The payloads whose nodes this worker may run: the mirror marks them RUNNING, and refuses
    those cancelled or claimed already (a task delivered twice)."""
    claims = [
        (
            payload["execution_id"],
            payload["node_id"],
            {
                "status": NodeStatus.RUNNING,
                "handler": payload["handler"],
                "position": payload.get("position", 0),
                "attempt": payload["attempt"],
                "started_at": started_at,
                "worker": worker,
            },
        )
        for payload in payloads
    ]
    together = task_queue.client() is mirror.client()
    if not together:
        heartbeat.publish_now()
    for tried in range(1, CLAIM_TRIES + 1):
        try:
            verdicts = mirror.mark_running(claims, first=heartbeat.write_beat if together else None)
            break
        except Exception:  # a claim applied before its reply was lost is the same claim again
            if tried == CLAIM_TRIES:  # see docs/reliability.md "Claims and reports under faults"
                logger.error("mirror unavailable: running %d node(s) unclaimed", len(claims), exc_info=True)
                return payloads
            logger.warning("mirror unavailable while claiming %d node(s); retrying", len(claims))
            threading.Event().wait(CLAIM_BACKOFF_S * 2 ** (tried - 1))
    allowed = []
    for payload, verdict in zip(payloads, verdicts, strict=True):
        if verdict:
            allowed.append(payload)
        else:
            logger.info(
                "skipping %s/%s attempt %s: cancelled or already running",
                payload["execution_id"],
                payload["node_id"],
                payload["attempt"],
            )
    return allowed


def send_report(publication: kafka_io.Publication, report: TaskComplete) -> None:
    """Hand the report to the producer. An output over WORKFLOW_MAX_OUTPUT_BYTES fails the node
    (measured only when the whole report is over it), and so does a report the producer refuses
    outright, so that the other nodes of the task are still reported."""
    try:
        value = encode(report)
    except (TypeError, ValueError, RecursionError) as exc:
        logger.error("%s/%s failed: its output is not JSON: %s", report.execution_id, report.node_id, exc)
        report = failed(report, f"the handler's output cannot be encoded as JSON: {exc}")
        value = encode(report)
    limit = conf().max_output_bytes
    if len(value) > limit and report.status == NodeStatus.COMPLETED:
        problem = size_problem("output", report.output, limit, "WORKFLOW_MAX_OUTPUT_BYTES")
        if problem is not None:
            logger.error("%s/%s failed: %s", report.execution_id, report.node_id, problem)
            report = failed(report, problem)
            value = encode(report)
    try:
        publication.send([(TASK_COMPLETE, report.execution_id, value)])
    except KafkaException as exc:
        logger.error("could not report %s/%s: %s", report.execution_id, report.node_id, exc)
        replacement = failed(report, f"could not report the outcome: {exc}")
        publication.send([(TASK_COMPLETE, replacement.execution_id, encode(replacement))])


def failed(report: TaskComplete, error: str) -> TaskComplete:
    return replace(report, status=NodeStatus.FAILED, output=None, error=error)


def deliver(publication: kafka_io.Publication) -> None:
    """Wait for Kafka to acknowledge the reports, sending again those it has not, until it has.
    A report the broker refuses for good is replaced, once, by one saying that the node failed."""
    refused = acknowledged(publication)
    if not refused:
        return
    replacements = kafka_io.Publication()
    for (_, _, value), error in refused:
        report = failed(TaskComplete.from_json(decode(value)), f"Kafka refused the report: {error}")
        logger.error("%s/%s: %s", report.execution_id, report.node_id, report.error)
        replacements.send([(TASK_COMPLETE, report.execution_id, encode(report))])
    for (_, key, _), error in acknowledged(replacements):
        logger.error("Kafka refused the failure report of a node of execution %s: %s", key, error)


def acknowledged(publication: kafka_io.Publication) -> list[tuple[tuple[str, str, bytes], KafkaError]]:
    """Wait until Kafka has answered every message, sending again while it is unreachable;
    return the messages it refused for good, with the reason."""
    refused = []
    while True:
        try:
            publication.wait()
        except KafkaException as exc:
            logger.warning(
                "could not report %d outcome(s) (%s); retrying", len(publication.unacknowledged), exc
            )
            refused.extend(publication.refused.values())
            threading.Event().wait(REPORT_RETRY_S)
            publication = publication.again()
            continue
        return [*refused, *publication.refused.values()]
