"""Benchmark the engine on a private stack and print one table against the Performance targets."""

import json
import signal
from pathlib import Path
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from devtools.bench import report
from devtools.bench.runner import SHAPES, run_bench
from devtools.devstack import WORKER_CONCURRENCY, WORKER_POOL


class Command(BaseCommand):
    help = (
        "Start a private API + scheduler + worker stack, run the benchmark shapes on it, print one "
        "table with the targets. The database is SQLite, or PostgreSQL when TEST_DATABASE_URL is set."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--quick", action="store_true", help="Tiny sizes: well under a minute.")
        parser.add_argument(
            "--only", nargs="+", choices=SHAPES, metavar="SHAPE", help=f"Of {', '.join(SHAPES)}."
        )
        parser.add_argument("--json", type=Path, metavar="FILE", help="Also write every number to FILE.")
        parser.add_argument("--worker-pool", default=WORKER_POOL, help="Celery --pool of the stack's worker.")
        parser.add_argument("--worker-concurrency", type=int, default=WORKER_CONCURRENCY)
        parser.add_argument(
            "--profile",
            type=Path,
            metavar="DIR",
            help="Record scheduler, worker and API with py-spy during each shape, into DIR/<shape>/.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        signal.signal(signal.SIGTERM, stop_cleanly)
        results = run_bench(
            quick=options["quick"],
            only=options["only"] or (),
            worker_pool=options["worker_pool"],
            worker_concurrency=options["worker_concurrency"],
            profile_dir=options["profile"],
        )
        results["comparisons"] = report.comparisons(results)
        results["targets"] = report.verdicts(results)
        self.stdout.write(report.render(results))
        if results["profiles"]:
            self.stdout.write(report.render_profiles(results))
        if options["json"]:
            options["json"].write_text(json.dumps(results, indent=2))
        failed = [name for name, shape in results["shapes"].items() if shape["status"] != "ok"]
        if failed:
            raise CommandError(f"shapes that did not finish: {', '.join(failed)}")


def stop_cleanly(signum: int, frame: FrameType | None) -> None:
    """SIGTERM (also how a background run is stopped: it ignores SIGINT) still stops the stack."""
    raise SystemExit(128 + signum)
