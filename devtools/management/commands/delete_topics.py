"""Delete the engine's Kafka topics under the configured prefix (test sessions clean up with it)."""

from django.core.management.base import BaseCommand, CommandError

from devtools.topics import delete_topics
from workflows.conf import conf
from workflows.messages import ALL_TOPICS


class Command(BaseCommand):
    help = f"Delete {', '.join(ALL_TOPICS)} under KAFKA_TOPIC_PREFIX (refused without one)."

    def handle(self, *args: object, **options: object) -> None:
        if not conf().kafka_topic_prefix:
            raise CommandError(
                "KAFKA_TOPIC_PREFIX is empty: delete_topics only drops a test session's topics"
            )
        for topic in delete_topics():
            self.stdout.write(f"{topic}: deleted")
