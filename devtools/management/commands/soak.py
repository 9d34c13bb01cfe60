"""Soak the engine: random executions on a private stack while workers, scheduler, Redis and Kafka fail."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from devtools.soak import FAULTS, SoakConfig, run_soak


class Command(BaseCommand):
    help = (
        "Start a stack with its own Redis and Kafka, submit random DAG executions (and a share of poison "
        "workflows) at a steady rate while injecting faults in turn (worker SIGKILL, scheduler SIGKILL + "
        "restart, Redis restarted empty, Kafka restarted, malformed task.complete messages), then check "
        "every execution and the handlers' invocation ledger. Exits 1 when an execution was lost, a node "
        "completed twice, a handler ran beyond at-least-once, the scheduler exited on a malformed message, "
        "an outcome was wrong or a submission failed. The database is SQLite, or PostgreSQL when "
        "TEST_DATABASE_URL is set."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        defaults = SoakConfig()
        parser.add_argument("--quick", action="store_true", help="A few executions and one fault.")
        parser.add_argument("--executions", type=int, default=defaults.executions)
        parser.add_argument("--seed", type=int, default=defaults.seed, help="Seed of the random DAGs.")
        parser.add_argument("--rate", type=float, default=defaults.rate_per_s, help="Submissions per second.")
        parser.add_argument(
            "--fault-every",
            type=float,
            default=defaults.fault_every_s,
            metavar="SECONDS",
            help="Between faults.",
        )
        parser.add_argument(
            "--faults",
            nargs="+",
            choices=FAULTS,
            default=list(FAULTS),
            metavar="FAULT",
            help=f"Of {', '.join(FAULTS)}.",
        )
        parser.add_argument(
            "--node-timeout",
            type=float,
            default=defaults.node_timeout_s,
            metavar="SECONDS",
            help="Every node's timeout, counted from when a worker starts it.",
        )
        parser.add_argument(
            "--finish-deadline", type=float, default=defaults.finish_deadline_s, metavar="SECONDS"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["quick"]:
            config = SoakConfig.quick(seed=options["seed"])
        else:
            config = SoakConfig(
                executions=options["executions"],
                seed=options["seed"],
                rate_per_s=options["rate"],
                fault_every_s=options["fault_every"],
                faults=tuple(options["faults"]),
                node_timeout_s=options["node_timeout"],
                finish_deadline_s=options["finish_deadline"],
            )
        tally = run_soak(config, self.stdout)
        if not tally.verdict_ok:
            raise CommandError(
                "the soak found lost executions, duplicated node effects, invocations beyond "
                "at-least-once, scheduler crashes or wrong outcomes"
            )
