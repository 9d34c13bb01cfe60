"""API views: each validates, calls one service or selector, and shapes the response."""

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from workflows import selectors, services
from workflows.__about__ import SERVICE_NAME, VERSION
from workflows.api import serializers
from workflows.health import health

ERRORS = {400: serializers.ErrorSerializer, 404: serializers.ErrorSerializer}


def wants_trigger(request: Request) -> bool:
    """`?trigger=true` or `"trigger": true` in the body submits and triggers in one call."""
    flag = request.query_params.get("trigger", "")
    body = request.data if isinstance(request.data, dict) else {}
    return flag.lower() in {"1", "true", "yes"} or body.get("trigger") is True


class WorkflowListCreateView(generics.ListAPIView):
    """GET: executions, newest first (filter with ?status= and ?name=). POST: submit a workflow."""

    serializer_class = serializers.ExecutionListSerializer

    def get_queryset(self) -> Any:
        params = self.request.query_params
        return selectors.execution_list(status=params.get("status"), name=params.get("name"))

    @extend_schema(
        request=serializers.WorkflowSubmitSerializer,
        responses={201: serializers.SubmitResponseSerializer, **ERRORS},
        parameters=[OpenApiParameter("trigger", bool, description="Trigger the execution at once.")],
    )
    def post(self, request: Request) -> Response:
        execution = services.workflow_submit(data=request.data, trigger=wants_trigger(request))
        message = (
            "Workflow submitted and triggered"
            if execution.triggered_at
            else (f"Workflow submitted; trigger it with POST /workflows/{execution.pk}/trigger")
        )
        return Response(
            {"execution_id": str(execution.pk), "status": execution.status.lower(), "message": message},
            status=201,
        )


class WorkflowTriggerView(APIView):
    """Start a submitted execution (also served at /workflow/trigger/{id}, as the original did)."""

    @extend_schema(
        request=None,
        responses={200: serializers.TriggerResponseSerializer, 409: serializers.ErrorSerializer, **ERRORS},
    )
    def post(self, request: Request, execution_id: str) -> Response:
        execution = services.execution_trigger(execution_id=execution_id)
        return Response(
            {
                "status": "triggered",
                "execution_id": str(execution.pk),
                "message": "Workflow execution started",
            }
        )


class WorkflowCancelView(APIView):
    """Cancel a pending or running execution (409 once it has finished)."""

    @extend_schema(
        request=None,
        responses={200: serializers.TriggerResponseSerializer, 409: serializers.ErrorSerializer, **ERRORS},
    )
    def post(self, request: Request, execution_id: str) -> Response:
        execution = services.execution_cancel(execution_id=execution_id)
        return Response(
            {
                "status": "cancelled",
                "execution_id": str(execution.pk),
                "message": "Workflow execution cancelled",
            }
        )


class WorkflowRetryView(APIView):
    """Run a FAILED or CANCELLED execution again from its failed nodes; completed nodes keep their outputs."""

    @extend_schema(
        request=None,
        responses={200: serializers.TriggerResponseSerializer, 409: serializers.ErrorSerializer, **ERRORS},
    )
    def post(self, request: Request, execution_id: str) -> Response:
        execution = services.execution_retry(execution_id=execution_id)
        return Response(
            {
                "status": "retrying",
                "execution_id": str(execution.pk),
                "message": "Failed nodes will run again",
            }
        )


class WorkflowEventsView(APIView):
    """The execution's history: every state change, oldest first."""

    @extend_schema(responses={200: serializers.EventSerializer(many=True), **ERRORS})
    def get(self, request: Request, execution_id: str) -> Response:
        return Response(serializers.EventSerializer(selectors.execution_events(execution_id), many=True).data)


class WorkflowStatusView(APIView):
    """Status, progress and per-node state of an execution."""

    @extend_schema(responses={200: serializers.StatusResponseSerializer, **ERRORS})
    def get(self, request: Request, execution_id: str) -> Response:
        return Response(selectors.execution_status(execution_id))


class WorkflowResultsView(APIView):
    """Outputs of every completed node, once the execution has finished (400 before)."""

    @extend_schema(responses={200: serializers.ResultsResponseSerializer, **ERRORS})
    def get(self, request: Request, execution_id: str) -> Response:
        return Response(selectors.execution_results(execution_id))


class HealthView(APIView):
    """Liveness of the API and its dependencies: 200 when all are up, 503 naming what is down."""

    @extend_schema(responses={200: dict, 503: dict})
    def get(self, request: Request) -> Response:
        report = health()
        body = {"status": report["status"], "service": SERVICE_NAME, "version": VERSION, **report}
        return Response(body, status=503 if report["down"] else 200)
