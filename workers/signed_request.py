"""The Celery request of the node tasks: run only when the scheduler signed the task (issue #12)."""

import logging

from celery.worker.request import Request
from confluent_kafka import KafkaException
from django.conf import settings

from workflows import dead_letters, signatures
from workflows.dead_letters import DeadLetter
from workflows.messages import SIGNATURE_HEADER, InvalidMessage

logger = logging.getLogger(__name__)


class SignedRequest(Request):
    """A task whose body does not carry the scheduler's signature (pushed to the broker's Redis
    by anyone else) is refused before any handler runs: dead-lettered, then acknowledged like a
    revoked task, so that it is neither run nor redelivered. Its nodes are not reported failed:
    the ids in a forged task prove nothing, and a real attempt they name must not be failed by it.

    The check is made in the worker's main process, where the task's raw body still is (the pool
    gets it to decode), in `revoked()`, which Celery asks before handing any request to the pool:
    one HMAC of the body per task."""

    _checked = False

    def revoked(self) -> bool:
        if not self._checked and not self._already_revoked:
            self._checked = True
            body = self._body if isinstance(self._body, bytes) else str(self._body).encode()
            try:
                signatures.check(self.task_name, body, self._request_dict.get(SIGNATURE_HEADER))
            except InvalidMessage as exc:
                refuse(self.id, body, exc)
                self._announce_revoked("forged", False, None, False)
                return True
        return super().revoked()


def refuse(task_id: str, body: bytes, error: InvalidMessage) -> None:
    """Dead-letter the task's body as it came; a Kafka outage loses the letter, not the log."""
    letter = DeadLetter(
        source=f"celery:{settings.CELERY_TASK_DEFAULT_QUEUE}",
        key=None,
        value=body,
        reason=error.reason,
        detail=f"task {task_id}: {error}",
    )
    try:
        dead_letters.send([letter])
    except KafkaException as exc:
        logger.error("could not dead-letter the refused task %s: %s", task_id, exc)
