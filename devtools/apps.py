"""The devtools app: installed by development and test settings only."""

from django.apps import AppConfig


class DevtoolsConfig(AppConfig):
    name = "devtools"
    verbose_name = "Development tools"

    def ready(self) -> None:
        """Record every handler invocation in the ledger (a no-op unless WORKFLOW_INVOCATION_LEDGER
        names a file, read at each call so tests can set it late)."""
        from devtools import ledger
        from workflows.handlers.registry import add_invocation_hook

        add_invocation_hook(ledger.record)
