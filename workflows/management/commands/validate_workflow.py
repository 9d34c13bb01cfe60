"""Validate workflow files without submitting them."""

from django.core.management.base import BaseCommand, CommandError, CommandParser

from workflows.management import console
from workflows.management.console import InputError


class Command(BaseCommand):
    help = (
        "Check each workflow FILE as submit_workflow would, without submitting it: prints "
        "'FILE: OK (N nodes)' or what is wrong. Exit status: 0 all valid; 2 any file unreadable "
        "or invalid."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("files", nargs="+", metavar="FILE", help="workflow definition (JSON)")

    def handle(self, *args: object, files: list[str], **options: object) -> None:
        invalid = 0
        for result in console.load_each(files):
            if isinstance(result, InputError):
                invalid += 1
                self.stderr.write(str(result))
            else:
                self.stdout.write(f"{result.path}: OK ({len(result.spec.nodes)} nodes)")
        if invalid:
            raise CommandError(f"{invalid} of {len(files)} file(s) invalid", returncode=console.EXIT_INVALID)
