"""App configuration for the workflow engine."""

from django.apps import AppConfig


class WorkflowsConfig(AppConfig):
    """The workflow engine app: definitions, executions, API and scheduler."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "workflows"
    verbose_name = "Workflows"

    def ready(self) -> None:
        """Parse the engine's settings as every process starts, so a bad one stops it at once, and
        register the built-in handlers, as any app registers its own here."""
        from workflows.conf import conf
        from workflows.handlers import builtin  # noqa: F401  registers on import

        conf()
