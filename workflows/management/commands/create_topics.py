"""Create the engine's Kafka topics (idempotent)."""

from django.core.management.base import BaseCommand, CommandParser

from workflows import kafka_io
from workflows.conf import conf
from workflows.messages import ALL_TOPICS


class Command(BaseCommand):
    help = "Create workflow.start, task.dispatch and task.complete if they do not exist."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--partitions", type=int, default=None, help="partitions per topic")

    def handle(self, *args: object, partitions: int | None = None, **options: object) -> None:
        created = kafka_io.ensure_topics(partitions)
        for name in ALL_TOPICS:
            topic = conf().topic(name)
            self.stdout.write(f"{topic}: {'created' if topic in created else 'exists'}")
