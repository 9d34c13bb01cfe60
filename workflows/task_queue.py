"""Node tasks put on the Celery queue in Redis in the round trip that writes the mirror.

Celery's `send_task` costs about 0.5 ms of Python and one Redis round trip per task, which was
the largest share of the scheduler's time (docs/performance.md). The scheduler builds instead the
message Celery's publish builds (task protocol 2 from Celery's own `as_task_v2`, JSON body, kombu's
Redis envelope) and pushes it with LPUSH on the same MULTI that writes the mirror: one round trip
per batch for both, and a worker never sees a task before the mirror shows it queued. Workers are
stock Celery. tests/integration/test_task_queue.py holds the message to what kombu publishes.
"""

import base64
import uuid
from collections.abc import Sequence
from functools import cache
from urllib.parse import urlsplit

import redis
from celery import current_app as celery_app
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from kombu.serialization import dumps as serialize
from kombu.utils.json import dumps as to_json

from workflows import mirror, signatures
from workflows.clients import redis_client
from workflows.messages import RUN_NODES_TASK, SIGNATURE_HEADER, TaskPayload, bundle_task_id

ORIGIN = f"scheduler@{uuid.uuid4().hex[:8]}"


@cache
def client() -> redis.Redis:
    """The broker's Redis: the mirror's client when both are the same database (the default)."""
    url = settings.CELERY_BROKER_URL
    if urlsplit(url).scheme not in ("redis", "rediss"):
        raise ImproperlyConfigured(f"CELERY_BROKER_URL must be a Redis URL (redis:// or rediss://): {url!r}")
    if url == settings.REDIS_URL:
        return mirror.client()
    return redis_client("broker")


@cache
def queue_key() -> str:
    """The Redis list a priority-0 task of the default queue goes to, as kombu names it."""
    prefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("global_keyprefix", "")
    return f"{prefix}{celery_app.conf.task_default_queue}"


def message(payloads: list[TaskPayload], countdown_s: float = 0.0) -> str:
    """The queue entry for a task running these node attempts: what `send_task(RUN_NODES_TASK,
    args=[payloads], task_id=..., countdown=..., ignore_result=True, headers={SIGNATURE_HEADER:
    ...})` would push, signed over its body's bytes; the log shows the id, not the payloads."""
    identifier = bundle_task_id(payloads)
    headers, properties, body, _ = celery_app.amqp.as_task_v2(
        identifier,
        RUN_NODES_TASK,
        args=[payloads],
        kwargs={},
        countdown=countdown_s or None,
        ignore_result=True,
        argsrepr=identifier,
        kwargsrepr="{}",
        origin=ORIGIN,
    )
    content_type, content_encoding, data = serialize(body, serializer="json")
    encoded = data.encode()
    headers[SIGNATURE_HEADER] = signatures.sign(RUN_NODES_TASK, encoded)
    properties.update(
        argsrepr=identifier,
        kwargsrepr="{}",
        delivery_mode=2,
        delivery_info={"exchange": "", "routing_key": celery_app.conf.task_default_queue},
        priority=0,
        body_encoding="base64",
        delivery_tag=str(uuid.uuid4()),
    )
    return to_json(
        {
            "body": base64.b64encode(encoded).decode(),
            "content-encoding": content_encoding,
            "content-type": content_type,
            "headers": headers,
            "properties": properties,
        }
    )


def push(pipe: redis.client.Pipeline, messages: Sequence[str]) -> int:
    """Queue on a pipeline of `client()` an LLEN, the tasks already waiting for a worker, then
    the LPUSH of these entries; return the LLEN's position among the pipeline's replies."""
    position = len(pipe)
    pipe.llen(queue_key())
    if messages:
        pipe.lpush(queue_key(), *messages)
    return position
