"""The workflow input as workers read it: from the database, once per execution in a process."""

from functools import lru_cache
from typing import Any

from django.db import close_old_connections

from workflows.models import Execution

CACHED_INPUTS = 256


@lru_cache(maxsize=CACHED_INPUTS)
def execution_input(execution_id: str) -> dict[str, Any]:
    """An execution's input, which never changes once submitted (so caching it is safe).
    Payloads no longer carry it: copied into every node's task it multiplied its size by the
    number of nodes, and only `input` nodes (or handlers that ask) need it."""
    close_old_connections()  # handler threads are long-lived; drop a connection the server closed
    found = Execution.objects.filter(pk=execution_id).values_list("input", flat=True).first()
    return found or {}
