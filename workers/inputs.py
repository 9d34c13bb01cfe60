"""The workflow input as workers read it: from the database, once per execution in a process."""

import threading
from functools import lru_cache
from typing import Any

from django.db import connection

from workflows.models import Execution

CACHED_INPUTS = 256
# Handlers run on many reused threads (workers/handler_threads.py), and a Django connection
# belongs to its thread: each reading thread keeping one exhausted PostgreSQL's connection slots
# (the throughput benchmark: "too many clients already"). So reads take turns and close theirs.
CONCURRENT_READS = 2
_reads = threading.BoundedSemaphore(CONCURRENT_READS)


@lru_cache(maxsize=CACHED_INPUTS)
def execution_input(execution_id: str) -> dict[str, Any]:
    """An execution's input, which never changes once submitted (so caching it is safe).
    Payloads no longer carry it: copied into every node's task it multiplied its size by the
    number of nodes, and only `input` nodes (or handlers that ask) need it."""
    with _reads:
        try:
            found = Execution.objects.filter(pk=execution_id).values_list("input", flat=True).first()
        finally:
            if not connection.in_atomic_block:  # a test's transaction, never a handler thread
                connection.close()
    return found or {}
