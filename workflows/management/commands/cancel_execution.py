"""Cancel executions: queued tasks are revoked and no node starts any more."""

from workflows import services
from workflows.management.console import ExecutionActionCommand
from workflows.models import ExecutionStatus


class Command(ExecutionActionCommand):
    help = "Cancel pending or running executions. Exit status: 0 all cancelled; 2 one was refused."
    done = ExecutionStatus.CANCELLED

    def act(self, execution_id: str) -> object:
        return services.execution_cancel(execution_id=execution_id)
