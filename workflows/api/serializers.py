"""Serializers: the shapes of requests and responses, for the browsable API and the OpenAPI schema.

Workflow definitions are validated by workflows/core/dag.py, which names the node and field of every
problem; the submit serializer describes the body for the schema and decodes the browsable API's
HTML form, and the node serializers below exist only to document a node's fields.

Only execution statuses and event kinds are enums in the schema: drf-spectacular names enums
after their field, and several differently valued `status` fields would otherwise collide. The
other statuses list their values in their help text.
"""

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import ParseError
from rest_framework.fields import empty

from workflows.__about__ import SERVICE_NAME, VERSION
from workflows.api import examples
from workflows.api.parsers import loads
from workflows.core.dag import MAX_NAME_LENGTH, MAX_TIMEOUT_S
from workflows.core.retry import MAX_ATTEMPTS, MAX_BACKOFF_MULTIPLIER, MAX_BACKOFF_S, RetryPolicy
from workflows.handlers.registry import handler_names
from workflows.models import ACTOR_FIELDS, Execution, ExecutionEvent, ExecutionStatus, NodeStatus
from workflows.selectors import ExecutionResults, ExecutionState

DEFAULT_RETRY = RetryPolicy()
ACTOR_HELP = "The user who %s it; null for a management command or an anonymous request."
RETRY_SCHEMA = {
    "description": "How often to attempt the node: a number of attempts, or a policy.",
    "oneOf": [
        {"type": "integer", "minimum": 1, "maximum": MAX_ATTEMPTS},
        {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "max_attempts": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_ATTEMPTS,
                    "default": DEFAULT_RETRY.max_attempts,
                },
                "backoff_seconds": {
                    "type": "number",
                    "minimum": 0,
                    "maximum": MAX_BACKOFF_S,
                    "default": DEFAULT_RETRY.backoff_seconds,
                },
                "backoff_multiplier": {
                    "type": "number",
                    "minimum": 1,
                    "maximum": MAX_BACKOFF_MULTIPLIER,
                    "default": DEFAULT_RETRY.backoff_multiplier,
                },
                "max_backoff_seconds": {
                    "type": "number",
                    "minimum": 0,
                    "maximum": MAX_BACKOFF_S,
                    "default": DEFAULT_RETRY.max_backoff_seconds,
                },
                "jitter": {"type": "boolean", "default": DEFAULT_RETRY.jitter},
            },
        },
    ],
}


@extend_schema_field(RETRY_SCHEMA)
class RetryField(serializers.JSONField):
    """A node's or the defaults' retry policy (documentation only)."""


def timeout_field() -> serializers.FloatField:
    return serializers.FloatField(
        required=False,
        min_value=0,
        max_value=MAX_TIMEOUT_S,
        help_text="Seconds a node may run before it fails (more than 0).",
    )


class NodeSerializer(serializers.Serializer):
    """One node of the DAG."""

    id = serializers.RegexField(
        r"^[\w-]{1,128}$", help_text="Unique in the workflow; templates refer to the node by it."
    )
    handler = serializers.ChoiceField(choices=sorted(handler_names()), help_text="What the node does.")
    dependencies = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="Ids of the nodes that must complete first."
    )
    config = serializers.DictField(
        required=False,
        help_text="The handler's settings; strings may use templates such as `{{ fetch.data.url }}` "
        "that read an ancestor's output.",
    )
    retry = RetryField(required=False)
    timeout_seconds = timeout_field()


class DefaultsSerializer(serializers.Serializer):
    """Settings every node takes unless it sets its own."""

    retry = RetryField(required=False)
    timeout_seconds = timeout_field()


class DagSerializer(serializers.Serializer):
    """The graph: nodes and their dependencies, which must not form a cycle."""

    nodes = NodeSerializer(many=True)


class JSONObjectField(serializers.JSONField):
    """A JSON object. In the HTML form it is a textarea of JSON, and a blank one means "absent"."""

    def get_value(self, dictionary: Any) -> Any:
        value = super().get_value(dictionary)
        return empty if value == "" else value

    def to_internal_value(self, data: Any) -> Any:
        """Form text is decoded like a JSON request body: bounded depth, finite numbers."""
        if not getattr(data, "is_json_string", False):
            return super().to_internal_value(data)
        try:
            return loads(str(data), field=self.field_name)
        except ParseError as exc:
            raise serializers.ValidationError(str(exc.detail)) from None


@extend_schema_field(OpenApiTypes.OBJECT)
class InputField(JSONObjectField):
    """The workflow's input parameters."""


@extend_schema_field(DagSerializer)
class DagField(JSONObjectField):
    """The DAG, documented by DagSerializer and validated by workflows/core/dag.py."""


@extend_schema_field(DefaultsSerializer)
class DefaultsField(JSONObjectField):
    """Node defaults, documented by DefaultsSerializer and validated by workflows/core/dag.py."""


class WorkflowSubmitSerializer(serializers.Serializer):
    """A workflow definition: a name and a DAG of nodes. Unknown keys are accepted and ignored."""

    name = serializers.CharField(
        max_length=MAX_NAME_LENGTH, initial=examples.WORKFLOW_NAME, help_text="Human name of the workflow."
    )
    dag = DagField(initial=examples.WORKFLOW_DAG, help_text="The nodes and their dependencies.")
    input = InputField(
        required=False,
        initial=examples.WORKFLOW_INPUT,
        help_text="Input parameters; `input` nodes pass them on to the nodes that depend on them.",
    )
    defaults = DefaultsField(
        required=False,
        initial=examples.WORKFLOW_DEFAULTS,
        help_text="Retry and timeout for nodes that set none.",
    )
    trigger = serializers.BooleanField(
        required=False, default=False, help_text="Trigger the execution at once (as ?trigger=true does)."
    )


class SubmitResponseSerializer(serializers.Serializer):
    """The answer to a submit."""

    # Rendered from the stored Execution.

    execution_id = serializers.UUIDField(source="pk")
    status = serializers.SerializerMethodField(help_text="`pending`, or `running` when triggered at once.")
    message = serializers.SerializerMethodField()

    def get_status(self, execution: Execution) -> str:
        return execution.status.lower()

    def get_message(self, execution: Execution) -> str:
        if execution.triggered_at:
            return "Workflow submitted and triggered"
        return f"Workflow submitted; trigger it with POST /workflows/{execution.pk}/trigger"


class ActionResponseSerializer(serializers.Serializer):
    """The answer to trigger, cancel and retry."""

    # Rendered from {"outcome": what was done, "execution": to which, "message"}.

    status = serializers.CharField(source="outcome", help_text="`triggered`, `cancelled` or `retrying`.")
    execution_id = serializers.UUIDField(source="execution.pk")
    message = serializers.CharField()


class ProgressSerializer(serializers.Serializer):
    """How many nodes there are, and how many completed or failed."""

    # Rendered from the whole selectors.ExecutionState (source="*").

    total = serializers.IntegerField(source="summary.total")
    completed = serializers.IntegerField(source="summary.completed")
    failed = serializers.IntegerField(source="summary.failed")
    percentage = serializers.FloatField()


class ListProgressSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    completed = serializers.IntegerField()
    failed = serializers.IntegerField()


NODE_STATUSES = ", ".join(f"`{status}`" for status in NodeStatus.values)


class NodeStateSerializer(serializers.Serializer):
    """One node's state within an execution."""

    # The shape mirror.node_detail stores; tests/workflows/api/test_status_shape.py pins the two.

    status = serializers.CharField(help_text=f"One of {NODE_STATUSES}.")
    handler = serializers.CharField()
    position = serializers.IntegerField(help_text="Index in the workflow's topological order.")
    attempt = serializers.IntegerField(help_text="The current attempt, from 1; 0 before the first.")
    queued_at = serializers.DateTimeField(allow_null=True)
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    worker = serializers.CharField(allow_null=True, help_text="The Celery worker that ran it.")
    error = serializers.CharField(allow_null=True)


@extend_schema_field(serializers.DictField(child=NodeStateSerializer()))
class NodeDetailsField(serializers.DictField):
    """Each node's state by id, as the mirror stores it: in NodeStateSerializer's shape already
    (mirror.node_detail), so it is passed on as it is. Rendering 200 nodes field by field cost
    more than the rest of the request."""

    def to_representation(self, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return value


def actor_name(verb: str) -> serializers.CharField:
    """Who acted on the execution, as the status read holds it (the summary's `actors`)."""
    return serializers.CharField(
        allow_null=True, source=f"summary.actors.{verb.split()[-1]}_by", help_text=ACTOR_HELP % verb
    )


class StatusResponseSerializer(serializers.Serializer):
    """An execution's status, progress and the state of each node."""

    # The one shape of an execution's status (GET /workflows/{id}, `workflow_status --json`),
    # rendered from a selectors.ExecutionState.

    execution_id = serializers.UUIDField()
    name = serializers.CharField(source="summary.name")
    status = serializers.ChoiceField(choices=ExecutionStatus.choices, source="summary.status")
    progress = ProgressSerializer(source="*")
    node_states = serializers.DictField(
        child=serializers.ChoiceField(choices=NodeStatus.choices), help_text="Each node's status, by id."
    )
    nodes = NodeDetailsField(help_text="Each node's state, by id.")
    error = serializers.CharField(allow_null=True, source="summary.error")
    created_at = serializers.DateTimeField(allow_null=True, source="summary.created_at")
    started_at = serializers.DateTimeField(allow_null=True, source="summary.started_at")
    finished_at = serializers.DateTimeField(allow_null=True, source="summary.finished_at")
    submitted_by = actor_name("submitted")
    triggered_by = actor_name("triggered")
    cancelled_by = actor_name("cancelled")
    retried_by = actor_name("last retried")


# Building a serializer deep-copies its fields: 0.2 ms of CPU for this one, about as much as the
# rest of a status read. Its bound fields keep no state between calls, so one instance renders all.
_STATUS = StatusResponseSerializer()


def status_body(state: ExecutionState) -> dict[str, Any]:
    """The status response for an execution's state, rendered by StatusResponseSerializer."""
    return _STATUS.to_representation(state)


class ResultsResponseSerializer(serializers.Serializer):
    """The outputs of a finished execution's completed nodes."""

    # Rendered from a selectors.ExecutionResults.

    execution_id = serializers.UUIDField(source="execution.pk")
    name = serializers.CharField(source="execution.name")
    status = serializers.ChoiceField(choices=ExecutionStatus.choices, source="execution.status")
    results = serializers.DictField(help_text="Each completed node's output, by id.")
    error = serializers.SerializerMethodField()

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_error(self, results: ExecutionResults) -> str | None:
        return results.execution.error or None


class ErrorItemSerializer(serializers.Serializer):
    """One problem in the request."""

    field = serializers.CharField(help_text="Where: a JSON path such as `dag.nodes[1].handler`.")
    message = serializers.CharField()
    node = serializers.CharField(
        required=False, allow_null=True, help_text="The node concerned, for problems in the DAG."
    )


class ErrorSerializer(serializers.Serializer):
    """Every error: one sentence in `detail`, a machine `code`, and `errors` locating each problem."""

    detail = serializers.CharField()
    code = serializers.CharField(
        help_text="For example `invalid_workflow`, `invalid_request`, `parse_error`, `not_found`, "
        "`already_triggered`, `already_finished`, `not_retryable`, `not_finished`."
    )
    errors = ErrorItemSerializer(many=True, help_text="Every problem found; empty when there is one cause.")


class DependencyHealthSerializer(serializers.Serializer):
    status = serializers.CharField(help_text="`up` or `down` (`unknown` when what the check needs is down).")
    latency_ms = serializers.FloatField(help_text="How long the check took.")
    error = serializers.CharField(required=False, help_text="Why it is down (or unknown).")


class HealthSerializer(serializers.Serializer):
    status = serializers.CharField(help_text="`ok`, or `degraded` when a dependency is down.")
    service = serializers.SerializerMethodField()
    version = serializers.SerializerMethodField()
    down = serializers.ListField(child=serializers.CharField(), help_text="The dependencies that are down.")
    dependencies = serializers.DictField(
        child=DependencyHealthSerializer(),
        help_text="`database`, `redis`, `kafka`, and `scheduler` (a live heartbeat, progress lately).",
    )

    def get_service(self, report: dict[str, Any]) -> str:
        return SERVICE_NAME

    def get_version(self, report: dict[str, Any]) -> str:
        return VERSION


def actor_field(verb: str) -> serializers.SlugRelatedField:
    return serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True, help_text=ACTOR_HELP % verb
    )


class ExecutionListSerializer(serializers.ModelSerializer):
    """One row of the execution list."""

    execution_id = serializers.UUIDField(source="id")
    progress = serializers.SerializerMethodField()
    submitted_by = actor_field("submitted")
    triggered_by = actor_field("triggered")
    cancelled_by = actor_field("cancelled")
    retried_by = actor_field("last retried")

    class Meta:
        model = Execution
        fields = [
            "execution_id",
            "name",
            "status",
            "progress",
            "error",
            "created_at",
            "started_at",
            "finished_at",
            *ACTOR_FIELDS,
        ]

    @extend_schema_field(ListProgressSerializer)
    def get_progress(self, execution: Execution) -> dict[str, int]:
        return {
            "total": execution.total_nodes,
            "completed": execution.completed_nodes,
            "failed": execution.failed_nodes,
        }


class EventSerializer(serializers.ModelSerializer):
    """One entry of an execution's history."""

    class Meta:
        model = ExecutionEvent
        fields = ["at", "kind", "node_id", "detail"]
        extra_kwargs = {
            "kind": {"help_text": "What happened."},
            "node_id": {"help_text": "The node concerned; empty for the execution's own events."},
            "detail": {
                "help_text": "What changed; submitted, triggered, cancelled and retried name who acted in "
                "`by` (a username, or null for a management command or an anonymous request)."
            },
        }
