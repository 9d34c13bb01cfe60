"""Run failed or cancelled executions again from their failed nodes."""

from workflows import services
from workflows.management.console import ExecutionActionCommand


class Command(ExecutionActionCommand):
    help = (
        "Retry FAILED or CANCELLED executions from their failed nodes; completed nodes keep their "
        "outputs. Exit status: 0 all retried; 2 one was refused."
    )
    done = "RUNNING again"

    def act(self, execution_id: str) -> object:
        return services.execution_retry(execution_id=execution_id)
