"""kombu's Redis transport with one guard, so that a Celery worker survives a Redis restart.

Celery 5.7.0's consumer handles a lost broker connection with `connection.collect()` and then
`connection.close()` (celery/worker/consumer/consumer.py, on_connection_error_after_connected).
When tasks were in flight, the first pass cannot finish closing the channel (Redis is down), and
`collect()` detaches the transport from its connection (`transport.client = None`). The second
pass closes the channel again, restores its unacknowledged messages through a new pool, and
kombu 5.7.0's `Channel._connparams` reads `self.connection.client.hostname`: AttributeError, which
neither kombu's nor Celery's error handling expects, so the worker exits ("Unrecoverable error:
AttributeError("'NoneType' object has no attribute 'hostname'")"). An ack on a channel of the
dropped connection takes the same path. No Celery or kombu release after 5.7.0 fixes it yet.

Here a channel whose transport is detached raises a redis ConnectionError instead, a connection
error that kombu and Celery already handle: the close is abandoned, a late ack is logged, and
the consumer reconnects. The messages not restored stay in kombu's unacked set (or died with an
empty Redis); the reconciler's evidence (heartbeats, the broker's epoch; workflows/scheduler/reconciler.py)
covers their nodes either way.
"""

from typing import Any

import redis
from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    """A channel that reports a detached transport as a lost connection."""

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection.client is None:
            raise redis.ConnectionError("the broker connection of this channel was closed")
        return super()._connparams(asynchronous=asynchronous)


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with the guarded channel (CELERY_BROKER_TRANSPORT names it)."""

    Channel = Channel
