"""The thin Celery task: run one node's handler and report the outcome to Kafka."""

import logging
import socket
from typing import Any

from celery import Task, shared_task
from django.utils import timezone

from workers.handlers import NodeContext, run_handler
from workflows import kafka_io, mirror
from workflows.conf import conf
from workflows.events import RUN_NODE_TASK, TASK_COMPLETE, TaskComplete, encode

logger = logging.getLogger(__name__)


@shared_task(name=RUN_NODE_TASK, bind=True)
def run_node(self: Task, payload: dict[str, Any]) -> None:
    """Run the handler, then publish task.complete; the task is acknowledged only after that."""
    worker = self.request.hostname or socket.gethostname()
    started_at = timezone.now().isoformat()
    execution_id, node_id, attempt = payload["execution_id"], payload["node_id"], payload["attempt"]
    running = {
        "status": "RUNNING",
        "handler": payload["handler"],
        "position": payload.get("position", 0),
        "attempt": attempt,
        "started_at": started_at,
        "worker": worker,
    }
    try:
        mirror.mark_running(execution_id, node_id, running)
    except Exception:  # the mirror is a convenience; never fail a node because Redis hiccuped
        logger.warning("could not mark %s/%s running in the mirror", execution_id, node_id, exc_info=True)
    context = NodeContext(
        execution_id=execution_id,
        node_id=node_id,
        attempt=attempt,
        config=payload.get("config") or {},
        upstream=payload.get("upstream") or {},
        input=payload.get("input") or {},
    )
    try:
        output, status, error = run_handler(payload["handler"], context), "COMPLETED", ""
    except Exception as exc:  # any handler failure is the node's failure, reported, not raised
        output, status, error = None, "FAILED", f"{type(exc).__name__}: {exc}"
    report = TaskComplete(
        execution_id,
        node_id,
        attempt,
        status,
        output=output,
        error=error,
        started_at=started_at,
        finished_at=timezone.now().isoformat(),
        worker=worker,
    )
    kafka_io.producer().produce(conf().topic(TASK_COMPLETE), key=execution_id, value=encode(report))
    kafka_io.flush()
