"""The transactional outbox: messages written with the change they announce, relayed to Kafka.

A trigger accepted while Kafka is down stays in the table and is published when Kafka is back;
the API never waits for Kafka. Relaying twice is harmless: consumers ignore duplicates.
"""

import logging

from django.db import transaction

from workflows import kafka_io
from workflows.conf import conf
from workflows.events import encode
from workflows.models import OutboxMessage

logger = logging.getLogger(__name__)
RELAY_BATCH_SIZE = 500
RELAY_FLUSH_TIMEOUT_S = 5.0


def enqueue(topic: str, key: str, payload: dict) -> None:
    """Add a message to the outbox; call inside the transaction that makes the change."""
    OutboxMessage.objects.create(topic=topic, key=key, payload=payload)


def relay() -> int:
    """Publish pending outbox messages and delete them once Kafka acknowledged them."""
    with transaction.atomic():
        pending = list(OutboxMessage.objects.select_for_update(skip_locked=True)[:RELAY_BATCH_SIZE])
        if not pending:
            return 0
        producer = kafka_io.producer()
        for message in pending:
            producer.produce(conf().topic(message.topic), key=message.key, value=encode(message.payload))
        kafka_io.flush(RELAY_FLUSH_TIMEOUT_S)
        OutboxMessage.objects.filter(pk__in=[message.pk for message in pending]).delete()
    logger.debug("relayed %d outbox message(s)", len(pending))
    return len(pending)
