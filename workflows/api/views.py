"""API views: each validates, calls one service or selector, and renders the answer with the
serializer that documents it (workflows/api/serializers.py).

The OpenAPI annotations name each operation and list its answers; the example bodies live in
workflows/api/examples.py.
"""

from typing import Any

from django.http import HttpResponse
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import generics
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.pagination import CursorPagination, PageNumberPagination
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request, is_form_media_type
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer
from rest_framework.views import APIView

from workflows import selectors, services
from workflows.api import auth, examples, serializers
from workflows.conf import conf
from workflows.health import health
from workflows.metrics import metrics_view
from workflows.models import Execution, ExecutionStatus

WORKFLOWS, EXECUTIONS, CONTROL, OPERATIONS = "workflows", "executions", "control", "operations"
LEGACY_TRIGGER_PREFIX = "/workflow/trigger/"


def error(description: str, cases: list[OpenApiExample]) -> OpenApiResponse:
    """An error answer in the schema: the common error body, with examples of this status."""
    return OpenApiResponse(serializers.ErrorSerializer, description=description, examples=cases)


NOT_FOUND = error("No execution has this id.", examples.NOT_FOUND_EXAMPLES)
WRITE_REFUSED = {
    401: error(
        "Anonymous writes are not allowed and the request has no token, or a wrong one.",
        examples.NO_TOKEN_EXAMPLES,
    ),
    403: error(
        "The user lacks the permission this write needs, or an anonymous write comes from another site.",
        examples.NO_PERMISSION_EXAMPLES,
    ),
    415: error(
        "An anonymous write sent a form, multipart or text/plain body.", examples.FORM_REFUSED_EXAMPLES
    ),
    429: error(
        "The user's writes passed WORKFLOWS_API_WRITE_RATE; `Retry-After` says when to retry.",
        examples.THROTTLED_EXAMPLES,
    ),
}
READ_REFUSED = {
    401: error(
        "Reads need credentials (WORKFLOWS_API_READS_REQUIRE_AUTH); the request has none, or a wrong token.",
        examples.NO_READ_CREDENTIALS_EXAMPLES,
    ),
    403: error("The user lacks `view_execution`.", examples.NO_VIEW_PERMISSION_EXAMPLES),
}


class ExecutionPagination(PageNumberPagination):
    """The settings' page-number pagination; the schema's example page links to this API's list."""

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        paginated = super().get_paginated_response_schema(schema)
        paginated["properties"]["count"]["example"] = examples.LIST_COUNT
        paginated["properties"]["next"]["example"] = examples.LIST_NEXT
        paginated["properties"]["previous"]["example"] = examples.LIST_PREVIOUS
        return paginated


class EventPagination(CursorPagination):
    """An execution's history a page at a time, oldest first: the cursor is the event id, so
    events written while a client walks the pages are neither skipped nor repeated."""

    ordering = "id"

    def get_page_size(self, request: Request) -> int:
        return conf().events_page_size

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        paginated = super().get_paginated_response_schema(schema)
        paginated["properties"]["next"]["example"] = examples.EVENTS_NEXT
        paginated["properties"]["previous"]["example"] = examples.EVENTS_PREVIOUS
        return paginated


def submitted_workflow(request: Request) -> object:
    """The workflow as sent. A JSON body is passed on as it is, for workflows/core/dag.py to validate;
    an HTML form (the browsable API's) is decoded by the submit serializer first."""
    if not is_form_media_type(request.content_type):
        return request.data
    form = serializers.WorkflowSubmitSerializer(data=request.data)
    form.is_valid(raise_exception=True)
    return dict(form.validated_data)


def wants_trigger(request: Request, workflow: object) -> bool:
    """`?trigger=true` or `"trigger": true` in the body submits and triggers in one call."""
    flag = request.query_params.get("trigger", "")
    body = workflow if isinstance(workflow, dict) else {}
    return flag.lower() in {"1", "true", "yes"} or body.get("trigger") is True


@extend_schema_view(
    get=extend_schema(
        operation_id="workflows_list",
        summary="List executions",
        description="Executions, newest first, a page of 50 at a time.",
        tags=[WORKFLOWS],
        parameters=[
            OpenApiParameter(
                "status",
                OpenApiTypes.STR,
                enum=ExecutionStatus.values,
                description="Only executions in this status (case-insensitive).",
            ),
            OpenApiParameter(
                "name", OpenApiTypes.STR, description="Only executions whose name contains this."
            ),
        ],
        responses={
            200: OpenApiResponse(
                serializers.ExecutionListSerializer(many=True), examples=examples.LIST_EXAMPLES
            ),
            404: error("The page is past the last one.", examples.INVALID_PAGE_EXAMPLES),
            **READ_REFUSED,
        },
    )
)
class WorkflowListCreateView(generics.ListAPIView):
    """GET: executions, newest first (filter with ?status= and ?name=). POST: submit a workflow."""

    serializer_class = serializers.ExecutionListSerializer
    pagination_class = ExecutionPagination
    write_permission = auth.ADD

    def get_serializer_class(self) -> type[BaseSerializer]:
        """The list rows for GET; the submit body for POST, so the browsable API's form shows it."""
        if self.request.method == "POST":
            return serializers.WorkflowSubmitSerializer
        return super().get_serializer_class()

    def get_queryset(self) -> Any:
        params = self.request.query_params
        return selectors.execution_list(status=params.get("status"), name=params.get("name"))

    @extend_schema(
        operation_id="workflows_submit",
        summary="Submit a workflow",
        description="Validate and store a workflow and create a PENDING execution of it. "
        'Trigger it later, or at once with `?trigger=true` or `"trigger": true`.',
        tags=[WORKFLOWS],
        request={"application/json": serializers.WorkflowSubmitSerializer},
        parameters=[OpenApiParameter("trigger", bool, description="Trigger the execution at once.")],
        examples=examples.SUBMIT_REQUESTS,
        responses={
            201: OpenApiResponse(
                serializers.SubmitResponseSerializer,
                description="Stored.",
                examples=examples.SUBMITTED_EXAMPLES,
            ),
            400: error(
                "The workflow is invalid: `errors` lists every problem by node and field.",
                examples.INVALID_WORKFLOW_EXAMPLES,
            ),
            **WRITE_REFUSED,
        },
    )
    def post(self, request: Request) -> Response:
        workflow = submitted_workflow(request)
        execution = services.workflow_submit(
            data=workflow, trigger=wants_trigger(request, workflow), actor=request.user
        )
        return Response(serializers.SubmitResponseSerializer(execution).data, status=201)


class TriggerSchema(AutoSchema):
    """The trigger view also serves the original engine's route, documented as deprecated."""

    def legacy(self) -> bool:
        return self.path.startswith(LEGACY_TRIGGER_PREFIX)

    def get_operation_id(self) -> str:
        return "executions_trigger_legacy" if self.legacy() else "executions_trigger"

    def is_deprecated(self) -> bool:
        return self.legacy()


class ExecutionActionView(APIView):
    """Trigger, cancel or retry: one service call, answered in the original engine's shape."""

    write_permission = auth.CHANGE
    outcome = ""
    message = ""

    def act(self, execution_id: str, actor: Any) -> Execution:
        raise NotImplementedError

    def post(self, request: Request, execution_id: str) -> Response:
        execution = self.act(execution_id, request.user)
        answer = {"outcome": self.outcome, "execution": execution, "message": self.message}
        return Response(serializers.ActionResponseSerializer(answer).data)


def action_schema(
    summary: str, description: str, answered: list[OpenApiExample], refused: OpenApiResponse, **kwargs: Any
) -> Any:
    """The schema of an action: its answer, and its refusals (404, 409, and the write refusals)."""
    return extend_schema(
        summary=summary,
        description=description,
        tags=[CONTROL],
        request=None,
        responses={
            200: OpenApiResponse(serializers.ActionResponseSerializer, examples=answered),
            404: NOT_FOUND,
            409: refused,
            **WRITE_REFUSED,
        },
        **kwargs,
    )


@extend_schema_view(
    post=action_schema(
        "Trigger an execution",
        "Start a PENDING execution; it runs once, so a second trigger is refused. "
        "`POST /workflow/trigger/{execution_id}` is the original engine's route for the same.",
        examples.TRIGGERED_EXAMPLES,
        error("It was already triggered.", examples.ALREADY_TRIGGERED_EXAMPLES),
    )
)
class WorkflowTriggerView(ExecutionActionView):
    """Start a submitted execution (also served at /workflow/trigger/{id}, as the original did)."""

    schema = TriggerSchema()
    outcome, message = "triggered", "Workflow execution started"

    def act(self, execution_id: str, actor: Any) -> Execution:
        return services.execution_trigger(execution_id=execution_id, actor=actor)


@extend_schema_view(
    post=action_schema(
        "Cancel an execution",
        "No node starts any more; queued tasks are revoked and late results ignored.",
        examples.CANCELLED_EXAMPLES,
        error("It has already finished.", examples.ALREADY_FINISHED_EXAMPLES),
        operation_id="executions_cancel",
    )
)
class WorkflowCancelView(ExecutionActionView):
    """Cancel a pending or running execution (409 once it has finished)."""

    outcome, message = "cancelled", "Workflow execution cancelled"

    def act(self, execution_id: str, actor: Any) -> Execution:
        return services.execution_cancel(execution_id=execution_id, actor=actor)


@extend_schema_view(
    post=action_schema(
        "Retry a failed execution",
        "Run a FAILED or CANCELLED execution again from where it stopped: completed nodes "
        "keep their outputs, the others start over with a fresh retry budget.",
        examples.RETRYING_EXAMPLES,
        error("It is neither FAILED nor CANCELLED.", examples.NOT_RETRYABLE_EXAMPLES),
        operation_id="executions_retry",
    )
)
class WorkflowRetryView(ExecutionActionView):
    """Run a FAILED or CANCELLED execution again from its failed nodes; completed nodes keep their outputs."""

    outcome, message = "retrying", "Failed nodes will run again"

    def act(self, execution_id: str, actor: Any) -> Execution:
        return services.execution_retry(execution_id=execution_id, actor=actor)


@extend_schema_view(
    get=extend_schema(
        operation_id="executions_events",
        summary="Execution history",
        description="Every state change of the execution, oldest first, a page at a time "
        "(`WORKFLOW_EVENTS_PAGE_SIZE`, 100 by default): follow `next` until it is null.",
        tags=[EXECUTIONS],
        responses={
            200: OpenApiResponse(serializers.EventSerializer(many=True), examples=examples.EVENTS_EXAMPLES),
            404: NOT_FOUND,
            **READ_REFUSED,
        },
    )
)
class WorkflowEventsView(generics.ListAPIView):
    """The execution's history: every state change, oldest first, paginated with a cursor."""

    serializer_class = serializers.EventSerializer
    pagination_class = EventPagination

    def get_queryset(self) -> Any:
        return selectors.execution_events(self.kwargs["execution_id"])


class WorkflowStatusView(APIView):
    """Status, progress and per-node state of an execution."""

    @extend_schema(
        operation_id="executions_status",
        summary="Execution status",
        description="Status, progress and each node's state; read from the Redis mirror when it has "
        "the execution, else from the database.",
        tags=[EXECUTIONS],
        responses={
            200: OpenApiResponse(serializers.StatusResponseSerializer, examples=examples.STATUS_EXAMPLES),
            404: NOT_FOUND,
            **READ_REFUSED,
        },
    )
    def get(self, request: Request, execution_id: str) -> Response:
        return Response(serializers.status_body(selectors.execution_status(execution_id)))


class WorkflowResultsView(APIView):
    """Outputs of every completed node, once the execution has finished (400 before)."""

    @extend_schema(
        operation_id="executions_results",
        summary="Execution results",
        description="The output of every completed node, once the execution has finished.",
        tags=[EXECUTIONS],
        responses={
            200: OpenApiResponse(serializers.ResultsResponseSerializer, examples=examples.RESULTS_EXAMPLES),
            400: error("It has not finished yet.", examples.NOT_FINISHED_EXAMPLES),
            404: NOT_FOUND,
            **READ_REFUSED,
        },
    )
    def get(self, request: Request, execution_id: str) -> Response:
        return Response(serializers.ResultsResponseSerializer(selectors.execution_results(execution_id)).data)


class HealthView(APIView):
    """Liveness of the API and its dependencies: 200 when all are up, 503 naming what is down."""

    # For load balancers and orchestrators, whatever the deployment: no credentials checked, not even
    # a wrong token.
    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="health",
        summary="Health of the API and its dependencies",
        description="Checks the database, Redis, Kafka and the schedulers' heartbeat, timing each.",
        tags=[OPERATIONS],
        responses={
            200: OpenApiResponse(
                serializers.HealthSerializer, description="All up.", examples=examples.HEALTH_OK_EXAMPLES
            ),
            503: OpenApiResponse(
                serializers.HealthSerializer,
                description="A dependency is down; `down` names it.",
                examples=examples.HEALTH_DEGRADED_EXAMPLES,
            ),
        },
    )
    def get(self, request: Request) -> Response:
        report = health()
        return Response(serializers.HealthSerializer(report).data, status=503 if report["down"] else 200)


class JSONOnly(BaseContentNegotiation):
    """Ignores Accept: a scraper asks for Prometheus or OpenMetrics text, not for a renderer."""

    def select_parser(self, request: Request, parsers: list[Any]) -> Any:
        return parsers[0]

    def select_renderer(
        self, request: Request, renderers: list[Any], format_suffix: str | None = None
    ) -> Any:
        return renderers[0], renderers[0].media_type


class MetricsView(APIView):
    """GET /metrics (workflows/metrics.py), behind credentials when WORKFLOWS_METRICS_REQUIRE_AUTH is on."""

    permission_classes = [auth.MetricsPermissions]
    renderer_classes = [JSONRenderer]  # for refusals; the exposition picks its own format
    content_negotiation_class = JSONOnly
    schema = None

    def get(self, request: Request) -> HttpResponse:
        return metrics_view(request._request)


def drop_optional_trailing_slash(endpoints: list[tuple[Any, ...]], **kwargs: Any) -> list[tuple[Any, ...]]:
    """drf-spectacular preprocessing hook: document `/workflows`, not `/workflows/`.

    The routes accept both (`/?$`); the schema generator keeps the optional slash as a real one.
    """
    return [(path.rstrip("/") or "/", *rest) for path, *rest in endpoints]
