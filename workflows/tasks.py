"""The engine's own Celery tasks: the periodic retention purge, run by Celery beat on the workers."""

import logging
from dataclasses import asdict
from datetime import timedelta

from celery import shared_task

from workflows import retention
from workflows.conf import conf

logger = logging.getLogger(__name__)
# The name the periodic task row (django_celery_beat) refers to: stable across module moves.
PURGE_TASK = "workflows.purge_expired_executions"


# Acknowledged on receipt, unlike node tasks: a long first purge would outlast the broker's
# visibility timeout and be delivered again to more workers; a purge cut short by a dead worker
# is simply finished by the next hourly run.
@shared_task(name=PURGE_TASK, acks_late=False)
def purge_expired_executions() -> dict[str, int]:
    """Delete the executions finished more than WORKFLOW_RETENTION_DAYS ago."""
    purged = retention.purge(older_than=timedelta(days=conf().retention_days))
    logger.info("retention purge: %s", purged)
    return asdict(purged)
