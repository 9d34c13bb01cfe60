"""The thin Celery task: run the handlers of the nodes it carries and report each outcome to Kafka."""

import logging
import socket
import threading
from dataclasses import replace
from typing import Any

from celery import Task, shared_task
from celery.signals import worker_process_init, worker_ready
from confluent_kafka import KafkaException
from django.utils import timezone

from workers import heartbeat
from workers.handler_threads import Job, run_all
from workers.handlers import NodeContext
from workflows import kafka_io, mirror, task_queue
from workflows.events import RUN_NODE_TASK, RUN_NODES_TASK, TASK_COMPLETE, TaskComplete, encode

logger = logging.getLogger(__name__)
REPORT_RETRY_S = 1.0


@worker_ready.connect
@worker_process_init.connect
def connect_producer(**kwargs: object) -> None:
    """Connect to Kafka before the first task, so the first report does not pay for it."""
    kafka_io.warm_up()


@shared_task(name=RUN_NODES_TASK, bind=True)
def run_nodes(self: Task, payloads: list[dict[str, Any]]) -> None:
    """A task carries one node, or several when the scheduler readied more at once than it
    spreads over separate tasks (WORKFLOW_MIN_TASKS_PER_BATCH)."""
    execute(payloads, self.request.hostname or socket.gethostname())


@shared_task(name=RUN_NODE_TASK, bind=True)
def run_node(self: Task, payload: dict[str, Any]) -> None:
    """The one-node task of earlier versions: its messages still queued when workers are
    upgraded run as a task of one node."""
    execute([payload], self.request.hostname or socket.gethostname())


def execute(payloads: list[dict[str, Any]], worker: str) -> None:
    """Run the nodes concurrently and report each outcome to task.complete as it comes; return
    (so that Celery acknowledges the task) only once Kafka has acknowledged every report."""
    started_at = timezone.now().isoformat()
    held = heartbeat.hold(payloads)
    try:
        mine = claimed(payloads, started_at, worker)
        heartbeat.release(set(held) - {heartbeat.attempt_of(payload) for payload in mine})
        report_all(mine, started_at, worker)
    finally:
        heartbeat.release(held)


def report_all(payloads: list[dict[str, Any]], started_at: str, worker: str) -> None:
    """Run the claimed nodes; the heartbeat tells each finished handler from one still running."""
    jobs = [Job(payload["handler"], context(payload), payload.get("timeout_seconds")) for payload in payloads]
    publication = kafka_io.Publication()
    for job, output, error in run_all(jobs):
        heartbeat.finished((job.context.execution_id, job.context.node_id, job.context.attempt))
        report = TaskComplete(
            job.context.execution_id,
            job.context.node_id,
            job.context.attempt,
            "FAILED" if error else "COMPLETED",
            output=output,
            error=error,
            started_at=started_at,
            finished_at=timezone.now().isoformat(),
            worker=worker,
        )
        send_report(publication, report)
    deliver(publication)


def context(payload: dict[str, Any]) -> NodeContext:
    return NodeContext(
        execution_id=payload["execution_id"],
        node_id=payload["node_id"],
        attempt=payload["attempt"],
        config=payload.get("config") or {},
        upstream=payload.get("upstream") or {},
        input=payload.get("input") or {},
    )


def claimed(payloads: list[dict[str, Any]], started_at: str, worker: str) -> list[dict[str, Any]]:
    """The payloads whose nodes this worker may run: the mirror marks them RUNNING, and refuses
    those cancelled or claimed already (a task delivered twice)."""
    claims = [
        (
            payload["execution_id"],
            payload["node_id"],
            {
                "status": "RUNNING",
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
    try:
        if not together:
            heartbeat.publish_now()
        verdicts = mirror.mark_running(claims, first=heartbeat.write_beat if together else None)
    except Exception:  # the mirror is a convenience; Redis trouble must not stop the nodes
        logger.warning("mirror unavailable while claiming %d node(s)", len(claims), exc_info=True)
        return payloads
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
    """Hand the report to the producer; one it refuses outright (an output over Kafka's message
    size) fails the node instead, so that the other nodes of the task are still reported."""
    try:
        publication.send([(TASK_COMPLETE, report.execution_id, encode(report))])
    except KafkaException as exc:
        logger.error("could not report %s/%s: %s", report.execution_id, report.node_id, exc)
        failed = replace(report, status="FAILED", output=None, error=f"could not report the outcome: {exc}")
        publication.send([(TASK_COMPLETE, failed.execution_id, encode(failed))])


def deliver(publication: kafka_io.Publication) -> None:
    """Wait for Kafka to acknowledge the reports, sending again those it has not, until it has."""
    while True:
        try:
            publication.wait()
            return
        except KafkaException as exc:
            logger.warning(
                "could not report %d outcome(s) (%s); retrying", len(publication.unacknowledged), exc
            )
            threading.Event().wait(REPORT_RETRY_S)
            publication = publication.again()
