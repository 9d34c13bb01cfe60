"""The workflow input as workers read it: from the database, once per execution in a process."""

from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any

from django.db import close_old_connections

from workflows.models import Execution

CACHED_INPUTS = 256
# Handlers run on many reused threads (workers/handler_threads.py), and a Django connection
# belongs to its thread: each reading thread keeping one exhausted PostgreSQL's connection slots
# (the throughput benchmark: "too many clients already"), and each opening and closing one cost
# a connection set-up per read. So two reader threads of their own do the reads, on connections
# they keep.
READER_THREADS = 2
_readers = ThreadPoolExecutor(max_workers=READER_THREADS, thread_name_prefix="input-reader")


@lru_cache(maxsize=CACHED_INPUTS)
def execution_input(execution_id: str) -> dict[str, Any]:
    """An execution's input, which never changes once submitted (so caching it is safe).
    Payloads no longer carry it: copied into every node's task it multiplied its size by the
    number of nodes, and only `input` nodes (or handlers that ask) need it."""
    return _readers.submit(read_input, execution_id).result()


def read_input(execution_id: str) -> dict[str, Any]:
    close_old_connections()  # the reader threads are long-lived: drop a connection the server closed
    found = Execution.objects.filter(pk=execution_id).values_list("input", flat=True).first()
    return found or {}
