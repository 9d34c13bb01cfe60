"""Submit workflow files as executions; optionally trigger them and follow them to the end."""

import json
import shutil
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from workflows import services
from workflows.management import console
from workflows.management.console import InputError, LoadedWorkflow


class Command(BaseCommand):
    help = (
        "Validate and submit each workflow FILE as a new execution and print its execution id. "
        "Every file is validated before any is submitted. "
        "Exit status: 0 success; 1 an execution FAILED or was CANCELLED (with --wait); "
        "2 invalid input (unreadable file, invalid JSON, invalid workflow or option; nothing is "
        "submitted); 3 --wait timed out."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("files", nargs="+", metavar="FILE", help="workflow definition (JSON)")
        parser.add_argument("--trigger", action="store_true", help="start each execution at once")
        parser.add_argument(
            "--wait",
            action="store_true",
            help="trigger, show progress, and wait until every execution has finished",
        )
        parser.add_argument(
            "--timeout",
            type=console.positive_seconds,
            default=console.DEFAULT_TIMEOUT_S,
            metavar="SECONDS",
            help=f"how long --wait waits for all executions (default {console.DEFAULT_TIMEOUT_S:g})",
        )
        parser.add_argument(
            "--input",
            dest="workflow_input",
            metavar="JSON_OR_@FILE",
            help="workflow input parameters, a JSON object or @FILE holding one; "
            "merged over each workflow's own input",
        )
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help="print one JSON document on stdout"
        )

    def handle(
        self,
        *args: object,
        files: list[str],
        trigger: bool,
        wait: bool,
        timeout: float,
        workflow_input: str | None,
        as_json: bool,
        **options: object,
    ) -> None:
        try:
            parameters = console.parse_input_option(workflow_input) if workflow_input is not None else None
        except InputError as exc:
            raise CommandError(str(exc), returncode=console.EXIT_INVALID) from None
        workflows = self.load_all(files, parameters)
        executions = [
            services.workflow_submit(data=workflow.data, input=parameters, trigger=trigger or wait)
            for workflow in workflows
        ]
        entries = [
            {"file": workflow.path, "execution_id": str(execution.pk), "name": execution.name}
            for workflow, execution in zip(workflows, executions, strict=True)
        ]
        if not as_json:
            for entry in entries:
                self.stdout.write(f"{entry['file']}: {entry['execution_id']}")
        rows = [
            {**entry, "status": execution.status}
            for entry, execution in zip(entries, executions, strict=True)
        ]
        code, message = 0, ""
        if wait:
            states = self.follow(entries, timeout, as_json)
            rows = [{**entry, **outcome(state)} for entry, state in zip(entries, states, strict=True)]
            code, message = console.outcome_problems([entry["file"] for entry in entries], states, timeout)
        if as_json:
            self.stdout.write(json.dumps(rows, indent=2))
        if code:
            raise CommandError(message, returncode=code)

    def load_all(self, files: list[str], overrides: dict[str, Any] | None) -> list[LoadedWorkflow]:
        """Every file validated, or each problem on stderr and exit 2 with nothing submitted."""
        results = console.load_each(files, overrides)
        problems = [result for result in results if isinstance(result, InputError)]
        for problem in problems:
            self.stderr.write(str(problem))
        if problems:
            raise CommandError(
                f"{len(problems)} of {len(files)} file(s) invalid; nothing submitted",
                returncode=console.EXIT_INVALID,
            )
        return [result for result in results if isinstance(result, LoadedWorkflow)]

    def follow(self, entries: list[dict[str, str]], timeout: float, as_json: bool) -> list[console.State]:
        """Wait with live progress; on stderr when stdout carries the JSON document."""
        stream = self.stderr if as_json else self.stdout
        terminal = stream.isatty()

        def write(frame: str) -> None:
            # Plain, whatever the stream's style (stderr's is red), and flushed so progress is live.
            stream.write(frame, style_func=lambda text: text, ending="")
            stream.flush()

        display = console.ProgressDisplay(
            write,
            [entry["file"] for entry in entries],
            terminal=terminal,
            width=shutil.get_terminal_size().columns - 1 if terminal else 0,
        )
        execution_ids = [entry["execution_id"] for entry in entries]
        try:
            return console.wait_for(
                execution_ids, status_of=console.status_of, display=display, timeout_s=timeout
            )
        except KeyboardInterrupt:
            raise CommandError(
                f"interrupted; the executions keep running: {', '.join(execution_ids)}",
                returncode=console.EXIT_INTERRUPTED,
            ) from None


def outcome(state: console.State) -> dict[str, Any]:
    """The fields of a followed execution that the JSON document reports."""
    keys = ("status", "progress", "error", "created_at", "started_at", "finished_at")
    return {key: state[key] for key in keys}
