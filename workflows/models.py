"""Database models: the source of truth for definitions, executions and node runs."""

import uuid

from django.conf import settings
from django.db import models


class ExecutionStatus(models.TextChoices):
    """Lifecycle of one execution."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class NodeStatus(models.TextChoices):
    """Lifecycle of one node within an execution."""

    PENDING = "PENDING"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    CANCELLED = "CANCELLED"


class EventKind(models.TextChoices):
    """What an entry of an execution's history records."""

    SUBMITTED = "submitted"
    TRIGGERED = "triggered"
    STARTED = "started"
    NODE_QUEUED = "node_queued"
    NODE_COMPLETED = "node_completed"
    NODE_RETRY = "node_retry"
    NODE_LOST = "node_lost"
    NODE_FAILED = "node_failed"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    RETRIED = "retried"


TERMINAL_EXECUTION_STATUSES = frozenset(
    {ExecutionStatus.COMPLETED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED}
)
ACTIVE_NODE_STATUSES = frozenset({NodeStatus.QUEUED, NodeStatus.RUNNING})
RETRYABLE_EXECUTION_STATUSES = frozenset({ExecutionStatus.FAILED, ExecutionStatus.CANCELLED})
RESETTABLE_NODE_STATUSES = frozenset({NodeStatus.FAILED, NodeStatus.SKIPPED, NodeStatus.CANCELLED})
ACTOR_FIELDS = ("submitted_by", "triggered_by", "cancelled_by", "retried_by")


class WorkflowDefinition(models.Model):
    """A validated, normalized workflow definition; executions share it by digest."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    digest = models.CharField(max_length=64, unique=True, help_text="SHA-256 of the normalized JSON.")
    spec = models.JSONField(help_text="The normalized definition, as WorkflowSpec.to_json() gives it.")
    node_count = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["name"], name="definition_name_idx")]

    def __str__(self) -> str:
        return f"{self.name} ({self.node_count} nodes)"


def actor_field(verb: str) -> models.ForeignKey:
    """Who did something to an execution: a user, or empty for a management command or an
    anonymous request. Deleting the user keeps the execution (the event history keeps the name)."""
    return models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text=f"Who {verb} it; empty for a management command or an anonymous request.",
    )


class Execution(models.Model):
    """One run of a definition; its id is the execution_id clients see."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False, verbose_name="execution id")
    definition = models.ForeignKey(WorkflowDefinition, on_delete=models.PROTECT, related_name="executions")
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=ExecutionStatus.choices, default=ExecutionStatus.PENDING)
    input = models.JSONField(default=dict, blank=True, help_text="Workflow input parameters.")
    error = models.TextField(blank=True, default="")
    total_nodes = models.PositiveIntegerField()
    completed_nodes = models.PositiveIntegerField(default=0)
    failed_nodes = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    triggered_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    submitted_by = actor_field("submitted")
    triggered_by = actor_field("triggered")
    cancelled_by = actor_field("cancelled")
    retried_by = actor_field("last retried")

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["-created_at"], name="execution_created_idx"),
            models.Index(fields=["status", "-created_at"], name="execution_status_idx"),
            models.Index(fields=["name", "-created_at"], name="execution_name_idx"),
            # the retention purge's selection (workflows/retention.py)
            models.Index(fields=["status", "finished_at"], name="execution_finished_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.name} {self.id} [{self.status}]"


class NodeRun(models.Model):
    """The state of one node of one execution: attempts, timings, output or error."""

    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="nodes")
    node_id = models.CharField(max_length=128)
    handler = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=NodeStatus.choices, default=NodeStatus.PENDING)
    attempt = models.PositiveIntegerField(
        default=0, help_text="The current attempt, from 1; 0 before the first."
    )
    budget_base = models.PositiveIntegerField(
        default=0, help_text="The attempt number the retry budget counts from (moved by retry-from-failure)."
    )
    lost_attempts = models.PositiveIntegerField(
        default=0,
        help_text="Attempts declared lost: their worker died, hung past the timeout, or Redis lost the task.",
    )
    pending_deps = models.PositiveIntegerField(help_text="Dependencies not yet COMPLETED.")
    position = models.PositiveIntegerField(help_text="Index in the definition's topological order.")
    config = models.JSONField(
        null=True, blank=True, help_text="The config as dispatched, templates resolved."
    )
    output = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    worker = models.CharField(max_length=200, blank=True, default="")
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["execution", "position"]
        constraints = [
            models.UniqueConstraint(fields=["execution", "node_id"], name="noderun_unique_node"),
        ]
        indexes = [
            models.Index(fields=["execution", "status", "pending_deps"], name="noderun_ready_idx"),
            models.Index(fields=["status", "queued_at"], name="noderun_active_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.node_id} [{self.status}]"


class ExecutionEvent(models.Model):
    """One entry of an execution's history: every state change, in order."""

    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    kind = models.CharField(max_length=32, choices=EventKind.choices)
    node_id = models.CharField(max_length=128, blank=True, default="")
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["execution", "id"]

    def __str__(self) -> str:
        return f"{self.kind} {self.node_id}".strip()


class OutboxMessage(models.Model):
    """A Kafka message written in the same transaction as the change it announces.

    The relay publishes and deletes it, so a message accepted while Kafka is down is not lost.
    """

    topic = models.CharField(max_length=200)
    key = models.CharField(max_length=200)
    payload = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.topic} {self.key}"
