"""The operator's admin: definitions and executions, read-only except through explicit actions."""

import json
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.contrib import admin, messages
from django.db.models import DurationField, ExpressionWrapper, F, QuerySet
from django.db.models.functions import Coalesce, Now
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from rest_framework.authtoken.admin import TokenAdmin
from rest_framework.authtoken.models import TokenProxy

from workflows import selectors, services
from workflows.dag_picture import INK_COLOUR, STATUS_COLOURS, DagPictureUnavailable, dag_svg, status_colour
from workflows.durations import format_duration, seconds_between
from workflows.errors import WorkflowError
from workflows.models import ACTOR_FIELDS, Execution, ExecutionEvent, NodeRun, WorkflowDefinition

# An execution can have thousands of nodes and events; the change page shows this many of each.
INLINE_ROW_LIMIT = 500
LIVE_STATE_NOTE = (
    "Live states, as the API reports them (the Redis mirror, else the database). The node table "
    "below shows the database, which may show a running node as QUEUED until it finishes."
)


def status_badge(status: str) -> SafeString:
    """A status as a coloured pill, coloured as in the DAG picture."""
    return format_html(
        '<span style="background:{};color:{};border:1px solid {};border-radius:9px;padding:1px 8px;'
        'font-size:11px;font-weight:600;white-space:nowrap">{}</span>',
        status_colour(status),
        INK_COLOUR,
        INK_COLOUR,
        status,
    )


def pretty_json(value: object) -> SafeString:
    """JSON indented in a scrolling <pre>, escaped."""
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
    return format_html(
        '<pre style="margin:0;max-height:16em;max-width:48em;overflow:auto;white-space:pre-wrap">{}</pre>',
        text,
    )


def run_duration(started_at: datetime | None, finished_at: datetime | None) -> str | None:
    """How long something ran, or has been running so far; None before it started."""
    if started_at is None:
        return None
    if finished_at is None:
        return f"{format_duration(seconds_between(started_at, timezone.now()) or 0.0)} so far"
    return format_duration(seconds_between(started_at, finished_at) or 0.0)


def as_uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text.strip())
    except ValueError:
        return None


class FirstRowsFormSet(BaseInlineFormSet):
    """An inline's first INLINE_ROW_LIMIT rows in the inline's order (an unbounded page is unusable)."""

    def get_queryset(self) -> QuerySet:
        if not hasattr(self, "_first_rows"):
            self._first_rows = super().get_queryset()[:INLINE_ROW_LIMIT]
        return self._first_rows


class ReadOnlyInline(admin.TabularInline):
    """Rows shown, never added, changed or deleted from the admin."""

    formset = FirstRowsFormSet
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class NodeRunInline(ReadOnlyInline):
    """The execution's nodes in topological order."""

    model = NodeRun
    verbose_name_plural = f"Nodes, in topological order (up to {INLINE_ROW_LIMIT} shown)"
    ordering = ("position",)
    fields = readonly_fields = (
        "node_id",
        "handler",
        "state",
        "attempt",
        "started_at",
        "finished_at",
        "duration",
        "worker",
        "output_or_error",
    )

    @admin.display(description="status")
    def state(self, node: NodeRun) -> SafeString:
        return status_badge(node.status)

    @admin.display(description="duration")
    def duration(self, node: NodeRun) -> str | None:
        return run_duration(node.started_at, node.finished_at)

    @admin.display(description="output or error")
    def output_or_error(self, node: NodeRun) -> SafeString | None:
        if node.error:
            return pretty_json({"error": node.error})
        return pretty_json(node.output) if node.output is not None else None


class ExecutionEventInline(ReadOnlyInline):
    """The execution's history, oldest first."""

    model = ExecutionEvent
    verbose_name_plural = f"Event history, oldest first (up to {INLINE_ROW_LIMIT} shown)"
    ordering = ("at", "id")
    fields = readonly_fields = ("at", "kind", "node_id", "details")

    @admin.display(description="detail")
    def details(self, event: ExecutionEvent) -> SafeString | None:
        return pretty_json(event.detail) if event.detail else None


def picture_html(spec: dict[str, Any], statuses: dict[str, str]) -> SafeString:
    """The DAG picture with its colour legend, or the reason there is none."""
    legend = format_html_join(" ", "{}", ((status_badge(status),) for status in STATUS_COLOURS))
    try:
        svg = dag_svg(spec, statuses)
    except DagPictureUnavailable as exc:
        return format_html("<p>{}</p><p>{}</p>", exc, legend)
    # dot writes every label XML-escaped and node ids only ever reach it inside labels, so the SVG
    # holds no markup from user data.
    return format_html(
        '<div class="dag-picture" style="max-height:70vh;overflow:auto">{}</div><p>{}</p>',
        mark_safe(svg),
        legend,
    )


class ReadOnlyModelAdmin(admin.ModelAdmin):
    """Nothing is added or edited by hand; superusers may delete (the scheduler ignores
    messages about executions that no longer exist)."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser


@admin.register(WorkflowDefinition)
class WorkflowDefinitionAdmin(ReadOnlyModelAdmin):
    """Stored definitions, shared by digest between the executions of one workflow."""

    list_display = ("name", "node_count", "created_at", "digest")
    list_filter = ("created_at",)
    search_fields = ("name", "=digest")
    fields = readonly_fields = (
        "id",
        "name",
        "node_count",
        "digest",
        "created_at",
        "dag_picture",
        "spec_json",
    )

    @admin.display(description="picture")
    def dag_picture(self, definition: WorkflowDefinition) -> SafeString:
        return picture_html(definition.spec, {})

    @admin.display(description="spec")
    def spec_json(self, definition: WorkflowDefinition) -> SafeString:
        return pretty_json(definition.spec)


@admin.register(Execution)
class ExecutionAdmin(ReadOnlyModelAdmin):
    """Executions: watch them, and trigger, cancel or retry them through the actions.

    The change permission on executions is what lets a staff user run the actions; the form
    itself is never editable, so nobody overwrites state the scheduler owns.
    """

    # Every column comes from the execution row itself (progress from its counters), so a list page
    # needs no join and runs the same queries whatever its size (tests/workflows/test_admin.py).
    list_display = ("name", "id", "state", "progress", "created_at", "duration")
    list_display_links = ("name", "id")
    list_filter = ("status", "created_at", "name")
    search_fields = ("name",)
    search_help_text = "An execution id, or part of a workflow name."
    ordering = ("-created_at",)
    show_full_result_count = False
    actions = ("trigger", "cancel", "retry")
    inlines = (NodeRunInline, ExecutionEventInline)
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "id",
                    "name",
                    "definition",
                    "state",
                    "progress",
                    "error",
                    "input_json",
                    ("created_at", "triggered_at", "started_at", "finished_at"),
                    "duration",
                    ACTOR_FIELDS,
                )
            },
        ),
        ("DAG", {"fields": ("dag_picture",)}),
    )
    readonly_fields = ("state", "progress", "input_json", "duration", "dag_picture")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Execution]:
        # The duration to sort on: so far for running executions, none before the start.
        ran_for = ExpressionWrapper(
            Coalesce("finished_at", Now()) - F("started_at"), output_field=DurationField()
        )
        return super().get_queryset(request).annotate(ran_for=ran_for)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Execution], search_term: str
    ) -> tuple[QuerySet[Execution], bool]:
        """Part of a name, or an exact execution id (looked up by primary key, on any database)."""
        by_name, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        execution_id = as_uuid(search_term)
        if execution_id is None:
            return by_name, may_have_duplicates
        return by_name | queryset.filter(pk=execution_id), may_have_duplicates

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("workflows.change_execution")

    @admin.display(description="status", ordering="status")
    def state(self, execution: Execution) -> SafeString:
        return status_badge(execution.status)

    @admin.display(description="progress")
    def progress(self, execution: Execution) -> str:
        done = f"{execution.completed_nodes}/{execution.total_nodes}"
        return f"{done} ({execution.failed_nodes} failed)" if execution.failed_nodes else done

    # Not started sorts as shortest on every database (PostgreSQL would put NULL first when descending).
    @admin.display(description="duration", ordering=F("ran_for").asc(nulls_first=True))
    def duration(self, execution: Execution) -> str | None:
        return run_duration(execution.started_at, execution.finished_at)

    @admin.display(description="input")
    def input_json(self, execution: Execution) -> SafeString:
        return pretty_json(execution.input)

    @admin.display(description="node states")
    def dag_picture(self, execution: Execution) -> SafeString:
        node_states = selectors.execution_status(execution.pk).node_states
        return format_html(
            '{}<p class="help">{}</p>', picture_html(execution.definition.spec, node_states), LIVE_STATE_NOTE
        )

    def apply_to_each(
        self,
        request: HttpRequest,
        queryset: QuerySet[Execution],
        operation: Callable[..., Execution],
        done: str,
    ) -> None:
        """Run one service per selected execution; report successes together, each refusal alone.

        Each success is also written to the admin's log, so the execution's History says who did it.
        """
        succeeded = 0
        for execution_id in queryset.values_list("pk", flat=True):
            try:
                execution = operation(execution_id=execution_id, actor=request.user)
            except WorkflowError as exc:
                self.message_user(request, exc.message, messages.ERROR)
            else:
                self.log_change(request, execution, f"{done} through the admin.")
                succeeded += 1
        if succeeded:
            plural = "" if succeeded == 1 else "s"
            self.message_user(request, f"{done} {succeeded} execution{plural}.", messages.SUCCESS)

    @admin.action(description="Trigger selected executions", permissions=["operate"])
    def trigger(self, request: HttpRequest, queryset: QuerySet[Execution]) -> None:
        self.apply_to_each(request, queryset, services.execution_trigger, "Triggered")

    @admin.action(description="Cancel selected executions", permissions=["operate"])
    def cancel(self, request: HttpRequest, queryset: QuerySet[Execution]) -> None:
        self.apply_to_each(request, queryset, services.execution_cancel, "Cancelled")

    @admin.action(description="Retry failed nodes of selected executions", permissions=["operate"])
    def retry(self, request: HttpRequest, queryset: QuerySet[Execution]) -> None:
        self.apply_to_each(request, queryset, services.execution_retry, "Retried")


class SuperuserTokenAdmin(TokenAdmin):
    """API tokens, for superusers only: DRF's admin lists every user's key, and whoever reads a
    superuser's key acts as them through the API, so a "view token" permission would grant all."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_module_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self.has_module_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_module_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_module_permission(request)


admin.site.unregister(TokenProxy)
admin.site.register(TokenProxy, SuperuserTokenAdmin)
