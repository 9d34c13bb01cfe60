"""Serializers: the shapes of requests and responses, for the browsable API and the OpenAPI schema.

Workflow definitions are validated by workflows/dag.py, which names the node and field of every
problem; the submit serializer describes the body for the form and the schema.
"""

from rest_framework import serializers

from workflows.models import Execution, ExecutionEvent


class WorkflowSubmitSerializer(serializers.Serializer):
    """A workflow definition: a name and a DAG of nodes."""

    name = serializers.CharField(help_text="Human name of the workflow.")
    dag = serializers.JSONField(
        help_text='{"nodes": [{"id", "handler", "dependencies", "config", "retry", "timeout_seconds"}]}'
    )
    input = serializers.JSONField(required=False, help_text="Workflow input parameters (an object).")
    trigger = serializers.BooleanField(required=False, default=False, help_text="Trigger at once.")


class SubmitResponseSerializer(serializers.Serializer):
    execution_id = serializers.UUIDField()
    status = serializers.CharField()
    message = serializers.CharField()


class TriggerResponseSerializer(SubmitResponseSerializer):
    pass


class ProgressSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    completed = serializers.IntegerField()
    failed = serializers.IntegerField()
    percentage = serializers.FloatField()


class StatusResponseSerializer(serializers.Serializer):
    execution_id = serializers.UUIDField()
    name = serializers.CharField()
    status = serializers.CharField()
    progress = ProgressSerializer()
    node_states = serializers.DictField(child=serializers.CharField())
    nodes = serializers.DictField(child=serializers.DictField())
    error = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField(allow_null=True)
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)


class ResultsResponseSerializer(serializers.Serializer):
    execution_id = serializers.UUIDField()
    name = serializers.CharField()
    status = serializers.CharField()
    results = serializers.DictField()
    error = serializers.CharField(allow_null=True)


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
    code = serializers.CharField()
    errors = serializers.ListField(child=serializers.DictField())


class ExecutionListSerializer(serializers.ModelSerializer):
    """One row of the execution list."""

    execution_id = serializers.UUIDField(source="id")
    progress = serializers.SerializerMethodField()

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
        ]

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
