"""What the operator commands share: read workflow files, describe problems, show progress and status.

The commands stay thin: they parse arguments, call services and selectors, and print what this
module renders. Apart from load_workflow, which validates through the services, everything here
works on plain values and the stream it is given, so unit tests drive it with dicts and a fake clock.
"""

import argparse
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from workflows import selectors, services
from workflows.api.serializers import status_body
from workflows.core.dag import WorkflowSpec
from workflows.core.templates import json_type
from workflows.durations import format_duration, seconds_between
from workflows.errors import WorkflowError
from workflows.models import TERMINAL_EXECUTION_STATUSES, ExecutionStatus, NodeStatus

EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_TIMED_OUT = 3
EXIT_INTERRUPTED = 130
DEFAULT_TIMEOUT_S = 600.0
POLL_INTERVAL_S = 0.2
BAR_WIDTH = 20
NAMES_SHOWN = 4  # node names listed per state in a progress line before "+N more"
CURSOR_UP = "\x1b[{}A"
CLEAR_LINE = "\r\x1b[2K"

State = dict[str, Any]


class InputError(Exception):
    """A file or option a command cannot use; the message names it and says why, line by line."""


@dataclass(frozen=True)
class LoadedWorkflow:
    """A workflow file that parsed and validated: the raw JSON to submit and its validated spec."""

    path: str
    data: object
    spec: WorkflowSpec


# ---------------------------------------------------------------- reading input


def read_json(path: str) -> object:
    """The JSON value in a file, or InputError naming the file and the OS or JSON reason."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    return decode_json(text, path)


def decode_json(text: str, source: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{source}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None


def parse_input_option(value: str) -> dict[str, object]:
    """`--input`: a JSON object written inline, or `@PATH` naming a file that holds one."""
    source = value[1:] if value.startswith("@") else "--input"
    data = read_json(source) if value.startswith("@") else decode_json(value, source)
    if not isinstance(data, dict):
        raise InputError(f"{source}: workflow input must be a JSON object, got {json_type(data)}")
    return data


def positive_seconds(text: str) -> float:
    """An argparse type: a number of seconds above zero."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"expected more than 0 seconds, got {text!r}")
    return seconds


def workflow_problems(path: str, error: WorkflowError) -> str:
    """The error's sentence; then, when there are several, each problem with its field and node."""
    lines = [f"{path}: invalid workflow: {error.message}"]
    if len(error.errors) > 1:
        lines.extend(f"  - {problem_line(problem)}" for problem in error.errors)
    return "\n".join(lines)


def problem_line(problem: dict[str, Any]) -> str:
    """`field: message`, naming the node too when the message does not already."""
    field, node, message = problem.get("field"), problem.get("node"), problem["message"]
    where = field or "workflow"
    if node is not None and f"node '{node}'" not in message:
        where += f" (node '{node}')"
    return f"{where}: {message}"


def load_workflow(path: str, overrides: dict[str, object] | None = None) -> LoadedWorkflow:
    """Read and validate one workflow file (and its input with `--input` merged over it), or
    InputError saying precisely what is wrong."""
    data = read_json(path)
    try:
        spec = services.workflow_validate(data=data)
        services.checked_input({**spec.input, **(overrides or {})})
    except WorkflowError as exc:
        raise InputError(workflow_problems(path, exc)) from None
    return LoadedWorkflow(path=path, data=data, spec=spec)


def load_each(
    paths: Sequence[str], overrides: dict[str, object] | None = None
) -> list[LoadedWorkflow | InputError]:
    """Every file's workflow or problem, in the order given, so all problems are reported at once."""
    results: list[LoadedWorkflow | InputError] = []
    for path in paths:
        try:
            results.append(load_workflow(path, overrides))
        except InputError as exc:
            results.append(exc)
    return results


# ---------------------------------------------------------------- progress


def is_finished(state: State) -> bool:
    return state["status"] in TERMINAL_EXECUTION_STATUSES


def progress_bar(completed: int, total: int, width: int = BAR_WIDTH) -> str:
    filled = width * completed // total if total else 0
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def progress_text(state: State) -> str:
    """`RUNNING 2/4 nodes, running: B, C` — what an execution's progress line says."""
    progress = state["progress"]
    parts = [f"{state['status']} {progress['completed']}/{progress['total']} nodes"]
    if progress.get("failed"):
        parts.append(f"{progress['failed']} failed")
    for status in (NodeStatus.RUNNING, NodeStatus.QUEUED):
        names = [node_id for node_id, current in state["node_states"].items() if current == status]
        if names:
            parts.append(f"{status.lower()}: {name_list(names)}")
    duration = stored_seconds_between(state.get("started_at"), state.get("finished_at"))
    if is_finished(state) and duration is not None:
        parts.append(f"in {format_duration(duration)}")
    return ", ".join(parts)


def name_list(names: Sequence[str]) -> str:
    shown = ", ".join(names[:NAMES_SHOWN])
    hidden = len(names) - NAMES_SHOWN
    return f"{shown} +{hidden} more" if hidden > 0 else shown


def progress_line(label: str, state: State, *, bar: bool = False, width: int = 0) -> str:
    """One execution's line: `label [####----] text` on a terminal (cut to `width`), else `label: text`."""
    if not bar:
        return f"{label}: {progress_text(state)}"
    progress = state["progress"]
    line = f"{label} {progress_bar(progress['completed'], progress['total'])} {progress_text(state)}"
    if width and len(line) > width:
        line = line[: max(width - 3, 0)] + "..."
    return line


class ProgressDisplay:
    """One progress line per execution, redrawn in place on a terminal, else printed when it changes.

    `write` gets whole frames, each ending in a newline. On a terminal a line must not wrap, or
    redrawing would climb too few rows: `width` cuts it.
    """

    def __init__(
        self, write: Callable[[str], object], labels: Sequence[str], *, terminal: bool, width: int = 0
    ) -> None:
        self.write = write
        # On a terminal the bars line up; plain lines are for logs and greps, so no padding there.
        width_of_labels = max((len(label) for label in labels), default=0)
        self.labels = [label.ljust(width_of_labels) if terminal else label for label in labels]
        self.terminal = terminal
        self.width = width
        self.shown: list[str | None] = [None] * len(self.labels)

    def show(self, states: Sequence[State]) -> None:
        lines = [
            progress_line(label, state, bar=self.terminal, width=self.width)
            for label, state in zip(self.labels, states, strict=True)
        ]
        if self.terminal:
            self.redraw(lines)
        else:
            changed = [line for line, before in zip(lines, self.shown, strict=True) if line != before]
            if changed:
                self.write("".join(line + "\n" for line in changed))
        self.shown = list(lines)

    def redraw(self, lines: list[str]) -> None:
        if lines == self.shown:
            return
        drawn = sum(line is not None for line in self.shown)
        up = CURSOR_UP.format(drawn) if drawn else ""
        self.write(up + "".join(f"{CLEAR_LINE}{line}\n" for line in lines))


def status_of(execution_id: str) -> State:
    """An execution's status as the API returns it."""
    return status_body(selectors.execution_status(execution_id))


def wait_for(
    execution_ids: Sequence[str],
    *,
    status_of: Callable[[str], State],
    display: ProgressDisplay,
    timeout_s: float,
    poll_interval_s: float = POLL_INTERVAL_S,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[State]:
    """Poll until every execution has finished or the deadline passes; the last state of each.

    A finished execution is not polled again. Whether the deadline passed shows in the result:
    some state is not finished.
    """
    deadline = clock() + timeout_s
    states: dict[str, State] = {}
    while True:
        for execution_id in execution_ids:
            if execution_id not in states or not is_finished(states[execution_id]):
                states[execution_id] = status_of(execution_id)
        latest = [states[execution_id] for execution_id in execution_ids]
        display.show(latest)
        remaining = deadline - clock()
        if all(is_finished(state) for state in latest) or remaining <= 0:
            return latest
        sleep(min(poll_interval_s, remaining))


def outcome_problems(labels: Sequence[str], states: Sequence[State], timeout_s: float) -> tuple[int, str]:
    """The exit code and message for executions that did not complete; (0, "") when all did."""
    failed = [
        f"{label}: execution {state['execution_id']} {state['status']}: {state.get('error') or 'no error'}"
        for label, state in zip(labels, states, strict=True)
        if is_finished(state) and state["status"] != ExecutionStatus.COMPLETED
    ]
    unfinished = [
        f"{label}: execution {state['execution_id']} unfinished after {format_duration(timeout_s)}: "
        f"{progress_text(state)}"
        for label, state in zip(labels, states, strict=True)
        if not is_finished(state)
    ]
    if failed:
        return EXIT_FAILED, "\n".join(failed + unfinished)
    if unfinished:
        return EXIT_TIMED_OUT, "timed out:\n" + "\n".join(unfinished)
    return 0, ""


# ---------------------------------------------------------------- status


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def stored_seconds_between(start: str | None, end: str | None) -> float | None:
    """Seconds between two stored ISO times."""
    return seconds_between(parse_time(start), parse_time(end))


def format_moment(value: str | None, *, with_date: bool = True) -> str:
    """A stored ISO time in UTC to the millisecond; the time of day only inside the node table."""
    moment = parse_time(value)
    if moment is None:
        return "-"
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    if with_date:
        return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"
    return moment.strftime("%H:%M:%S.%f")[:-3]


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns two spaces apart, with a rule under the headers."""
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()

    return [line(headers), line(["-" * width for width in widths]), *(line(row) for row in rows)]


NODE_COLUMNS = ("NODE", "HANDLER", "STATUS", "ATTEMPT", "STARTED", "FINISHED", "DURATION", "WORKER")


def node_row(node_id: str, detail: dict[str, Any]) -> list[str]:
    duration = stored_seconds_between(detail.get("started_at"), detail.get("finished_at"))
    return [
        node_id,
        detail.get("handler") or "-",
        detail.get("status") or "-",
        str(detail.get("attempt") or 0),
        format_moment(detail.get("started_at"), with_date=False),
        format_moment(detail.get("finished_at"), with_date=False),
        format_duration(duration) if duration is not None else "-",
        detail.get("worker") or "-",
    ]


def status_lines(state: State) -> list[str]:
    """An execution as `workflow_status` prints it: summary, timings, error, node table, node errors."""
    progress = state["progress"]
    duration = stored_seconds_between(state.get("started_at"), state.get("finished_at"))
    lines = [
        f"Execution {state['execution_id']}  {state['name']}",
        f"Status:   {state['status']}  ({progress['completed']}/{progress['total']} nodes completed, "
        f"{progress['failed']} failed)",
        f"Created:  {format_moment(state.get('created_at'))}",
        f"Started:  {format_moment(state.get('started_at'))}",
        f"Finished: {format_moment(state.get('finished_at'))}",
        f"Duration: {format_duration(duration) if duration is not None else '-'}",
    ]
    if state.get("error"):
        lines.append(f"Error:    {state['error']}")
    nodes: dict[str, dict[str, Any]] = state["nodes"]
    lines += ["", *table(NODE_COLUMNS, [node_row(node_id, detail) for node_id, detail in nodes.items()])]
    node_errors = [
        f"  {node_id}: {detail['error']}" for node_id, detail in nodes.items() if detail.get("error")
    ]
    if node_errors:
        lines += ["", "Node errors:", *node_errors]
    return lines


class ExecutionActionCommand(BaseCommand):
    """A command that applies one service to each execution id it is given (cancel, retry)."""

    done = ""

    def act(self, execution_id: str) -> object:
        raise NotImplementedError

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("execution_ids", nargs="+", metavar="EXECUTION_ID")

    def handle(self, *args: object, execution_ids: list[str], **options: object) -> None:
        refused = 0
        for execution_id in execution_ids:
            try:
                self.act(execution_id)
                self.stdout.write(f"{execution_id}: {self.done}")
            except WorkflowError as exc:
                self.stderr.write(f"{execution_id}: {exc.message}")
                refused += 1
        if refused:
            raise CommandError(f"{refused} of {len(execution_ids)} refused", returncode=EXIT_INVALID)
