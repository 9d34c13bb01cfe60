"""Deleting the engine's topics under a test session's prefix: development only, so that no
production image carries a command that drops live topics."""

from confluent_kafka.admin import AdminClient

from workflows.clients import kafka_config
from workflows.conf import conf
from workflows.kafka_io import ADMIN_TIMEOUT_S
from workflows.messages import ALL_TOPICS


def delete_topics() -> list[str]:
    """Delete the engine's topics (test sessions clean up their prefixed topics with this)."""
    admin = AdminClient(kafka_config("admin"))
    existing = set(admin.list_topics(timeout=ADMIN_TIMEOUT_S).topics)
    doomed = [conf().topic(name) for name in ALL_TOPICS if conf().topic(name) in existing]
    for future in admin.delete_topics(doomed).values() if doomed else ():
        future.result(ADMIN_TIMEOUT_S)
    return doomed
