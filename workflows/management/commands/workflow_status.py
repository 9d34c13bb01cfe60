"""Show an execution's status: its timings and error, and a table of its nodes."""

import json

from django.core.management.base import BaseCommand, CommandError, CommandParser

from workflows.errors import NotFound
from workflows.management import console


class Command(BaseCommand):
    help = (
        "Show an execution: status, timings, error, and per node its handler, status, attempt, "
        "start, finish, duration and worker. Exit status: 0 shown (whatever the execution's "
        "status); 2 no execution has that id."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("execution_id", metavar="EXECUTION_ID")
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help="print the status as the API returns it"
        )

    def handle(self, *args: object, execution_id: str, as_json: bool, **options: object) -> None:
        try:
            state = console.status_of(execution_id)
        except NotFound as exc:
            raise CommandError(exc.message, returncode=console.EXIT_INVALID) from None
        if as_json:
            self.stdout.write(json.dumps(state, indent=2))
            return
        for line in console.status_lines(state):
            self.stdout.write(line)
