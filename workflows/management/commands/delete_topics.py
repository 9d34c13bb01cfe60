"""Delete the engine's Kafka topics under the configured prefix (used by test sessions)."""

from django.core.management.base import BaseCommand

from workflows import kafka_io


class Command(BaseCommand):
    help = "Delete workflow.start, task.dispatch and task.complete (with KAFKA_TOPIC_PREFIX)."

    def handle(self, *args: object, **options: object) -> None:
        for topic in kafka_io.delete_topics():
            self.stdout.write(f"{topic}: deleted")
