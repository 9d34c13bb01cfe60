"""The workflow input as workers read it: from the database, once per execution in a process."""

import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
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
_lock = threading.Lock()
_reads: OrderedDict[str, Future] = OrderedDict()  # the latest CACHED_INPUTS executions' reads


def execution_input(execution_id: str) -> dict[str, Any]:
    """An execution's input, which never changes once submitted (so keeping it is safe).
    Payloads no longer carry it: copied into every node's task it multiplied its size by the
    number of nodes, and only `input` nodes (or handlers that ask) need it. The input nodes of an
    execution start together: they share one read (a read each queued 2,000 reads behind the two
    readers in the throughput benchmark)."""
    with _lock:
        read = _reads.get(execution_id)
        if read is None:
            read = _reads[execution_id] = _readers.submit(read_input, execution_id)
            if len(_reads) > CACHED_INPUTS:
                _reads.popitem(last=False)
        else:
            _reads.move_to_end(execution_id)
    try:
        return read.result()
    except Exception:
        with _lock:  # a failed read is not kept: the next node reads again
            if _reads.get(execution_id) is read:
                del _reads[execution_id]
        raise


def forget_inputs() -> None:
    with _lock:
        _reads.clear()


def read_count() -> int:
    """How many executions' reads are kept (tests)."""
    with _lock:
        return len(_reads)


def read_input(execution_id: str) -> dict[str, Any]:
    close_old_connections()  # the reader threads are long-lived: drop a connection the server closed
    found = Execution.objects.filter(pk=execution_id).values_list("input", flat=True).first()
    return found or {}
