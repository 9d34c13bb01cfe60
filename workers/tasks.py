"""The thin Celery task: run one node's handler and report the outcome to Kafka."""

import logging
import socket
import threading
from typing import Any

from celery import Task, shared_task
from celery.signals import worker_process_init, worker_ready
from confluent_kafka import KafkaException
from django.utils import timezone

from workers.handlers import NodeContext, run_handler
from workflows import kafka_io, mirror
from workflows.events import RUN_NODE_TASK, TASK_COMPLETE, TaskComplete, encode

logger = logging.getLogger(__name__)
REPORT_RETRY_S = 1.0


@worker_ready.connect
@worker_process_init.connect
def connect_producer(**kwargs: object) -> None:
    """Connect to Kafka before the first task, so the first report does not pay for it."""
    kafka_io.warm_up()


@shared_task(name=RUN_NODE_TASK, bind=True)
def run_node(self: Task, payload: dict[str, Any]) -> None:
    """Run the handler, then publish task.complete; the task is acknowledged only after that."""
    worker = self.request.hostname or socket.gethostname()
    execution_id, node_id, attempt = payload["execution_id"], payload["node_id"], payload["attempt"]
    started_at = timezone.now().isoformat()
    if not claim(payload, started_at, worker):
        logger.info("skipping %s/%s attempt %s: cancelled or already running", execution_id, node_id, attempt)
        return
    context = NodeContext(
        execution_id=execution_id,
        node_id=node_id,
        attempt=attempt,
        config=payload.get("config") or {},
        upstream=payload.get("upstream") or {},
        input=payload.get("input") or {},
    )
    output, error = run_with_timeout(payload["handler"], context, payload.get("timeout_seconds"))
    report = TaskComplete(
        execution_id,
        node_id,
        attempt,
        "FAILED" if error else "COMPLETED",
        output=output,
        error=error,
        started_at=started_at,
        finished_at=timezone.now().isoformat(),
        worker=worker,
    )
    message = [(TASK_COMPLETE, execution_id, encode(report))]
    while True:  # the outcome must reach Kafka before the task is acknowledged
        try:
            kafka_io.publish(message)
            return
        except KafkaException as exc:
            logger.warning("could not report %s/%s (%s); retrying", execution_id, node_id, exc)
            threading.Event().wait(REPORT_RETRY_S)


def claim(payload: dict[str, Any], started_at: str, worker: str) -> bool:
    """Mark the node RUNNING in the mirror; False when the mirror says not to run it."""
    running = {
        "status": "RUNNING",
        "handler": payload["handler"],
        "position": payload.get("position", 0),
        "attempt": payload["attempt"],
        "started_at": started_at,
        "worker": worker,
    }
    try:
        return mirror.mark_running(payload["execution_id"], payload["node_id"], running)
    except Exception:  # the mirror is a convenience; Redis trouble must not stop the node
        logger.warning("mirror unavailable while claiming %s", payload["node_id"], exc_info=True)
        return True


def run_with_timeout(handler: str, context: NodeContext, timeout_s: float | None) -> tuple[Any, str]:
    """Run a handler, giving up after timeout_s: a timed-out attempt is a failed attempt.

    The handler runs in its own thread so the timeout works in any Celery pool; a handler that
    overruns is abandoned, and its late result is never reported.
    """
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["output"] = run_handler(handler, context)
        except Exception as exc:  # any handler failure is the node's failure, reported, not raised
            outcome["error"] = f"{type(exc).__name__}: {exc}"

    thread = threading.Thread(target=target, name=f"node-{context.node_id}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        return None, f"timed out after {timeout_s}s"
    return outcome.get("output"), outcome.get("error", "")
