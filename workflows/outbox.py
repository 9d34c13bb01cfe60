"""The transactional outbox: messages written with the change they announce, relayed to Kafka.

A trigger accepted while Kafka is down stays in the table and is published when Kafka is back;
the API never waits for Kafka. Relaying twice is harmless: consumers ignore duplicates, so the
relay holds no lock while it talks to Kafka.
"""

import logging

from workflows import kafka_io
from workflows.messages import encode
from workflows.models import OutboxMessage

logger = logging.getLogger(__name__)
RELAY_BATCH_SIZE = 500
RELAY_FLUSH_TIMEOUT_S = 5.0


def enqueue(topic: str, key: str, payload: dict) -> None:
    """Add a message to the outbox; call inside the transaction that makes the change."""
    OutboxMessage.objects.create(topic=topic, key=key, payload=payload)


def relay() -> int:
    """Publish pending outbox messages, then delete the ones Kafka acknowledged."""
    pending = list(OutboxMessage.objects.all()[:RELAY_BATCH_SIZE])
    if not pending:
        return 0
    refused = kafka_io.publish(
        [(message.topic, message.key, encode(message.payload)) for message in pending], RELAY_FLUSH_TIMEOUT_S
    )
    for index, error in refused.items():  # sending it again cannot help; keeping it would block the relay
        logger.error(
            "Kafka refused outbox message %s (%s) for good: %s", pending[index].pk, pending[index].key, error
        )
    OutboxMessage.objects.filter(pk__in=[message.pk for message in pending]).delete()
    logger.debug("relayed %d outbox message(s)", len(pending))
    return len(pending)
