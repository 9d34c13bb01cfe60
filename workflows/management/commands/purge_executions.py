"""Delete finished executions older than a duration: the retention purge, on demand."""

import argparse
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from workflows import retention
from workflows.conf import conf
from workflows.models import TERMINAL_EXECUTION_STATUSES


def duration(text: str) -> timedelta:
    try:
        return retention.parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def batch_size(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"invalid batch size {text!r}: expected a whole number above 0")
    return int(text)


class Command(BaseCommand):
    help = (
        "Delete executions finished (COMPLETED, FAILED, CANCELLED) more than --older-than ago, with "
        "their nodes, events, outbox messages and Redis mirror, in batches of one transaction each."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            type=duration,
            help="finished longer ago than this: 30d, 12h, 90m or 45s (default: WORKFLOW_RETENTION_DAYS)",
        )
        parser.add_argument(
            "--status",
            nargs="+",
            type=str.upper,
            choices=sorted(TERMINAL_EXECUTION_STATUSES),
            default=sorted(TERMINAL_EXECUTION_STATUSES),
            help="only executions with these statuses (default: all three)",
        )
        parser.add_argument("--dry-run", action="store_true", help="print what would go; delete nothing")
        parser.add_argument(
            "--batch-size",
            type=batch_size,
            default=retention.PURGE_BATCH_SIZE,
            help=f"executions per transaction (default {retention.PURGE_BATCH_SIZE})",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        older_than = options["older_than"] or timedelta(days=conf().retention_days)
        now = timezone.now()
        purged = retention.purge(
            older_than=older_than,
            statuses=options["status"],
            dry_run=options["dry_run"],
            batch_size=options["batch_size"],
            now=now,
        )
        verb = "would delete (dry run)" if options["dry_run"] else "deleted"
        self.stdout.write(
            f"{verb} {purged.executions} execution(s) {', '.join(options['status'])} finished before "
            f"{now - older_than:%Y-%m-%d %H:%M:%S} UTC, with {purged.nodes} node(s), {purged.events} "
            f"event(s) and {purged.outbox_messages} outbox message(s)"
        )
