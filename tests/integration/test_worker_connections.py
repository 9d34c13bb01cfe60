"""A worker's handler threads read the workflow input without each keeping a database connection."""

import os
from pathlib import Path
from urllib.parse import urlparse

import psycopg
import requests

from devtools.devstack import Stack

EXECUTIONS = 16
INPUT_NODES = 16
# The worker's two input reader threads hold one each (workers/inputs.py); what must not happen is one per
# handler thread that read an input (dozens here before the fix).
MOST_CONNECTIONS = 2


def fan_out_of_inputs(name: str) -> dict:
    """Input nodes that all start at once, on as many handler threads, each reading the
    execution's input from the database before any of them has cached it."""
    nodes = [{"id": f"in{i}", "handler": "input"} for i in range(INPUT_NODES)]
    return {"name": name, "input": {"topic": name}, "dag": {"nodes": nodes}}


def local_ports(pid: int) -> set[int]:
    """The local TCP ports of a process's sockets (its fds matched to /proc/net/tcp by inode)."""
    inodes = {
        target[len("socket:[") : -1]
        for fd in Path(f"/proc/{pid}/fd").iterdir()
        if (target := os.readlink(fd)).startswith("socket:[")
    }
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def worker_connections(stack: Stack) -> int:
    """Database connections the worker process holds: open files of its SQLite database, or
    PostgreSQL sessions whose client port is one of the worker's sockets."""
    pid = stack.processes["worker"].pid
    url = urlparse(stack.env["DATABASE_URL"])
    if url.scheme == "sqlite":
        database = os.path.realpath(url.path)
        return sum(1 for fd in Path(f"/proc/{pid}/fd").iterdir() if os.path.realpath(fd) == database)
    with psycopg.connect(stack.env["DATABASE_URL"], autocommit=True) as conn:
        ports = [row[0] for row in conn.execute("SELECT client_port FROM pg_stat_activity").fetchall()]
    return len(set(ports) & local_ports(pid))


def test_handler_threads_reading_inputs_keep_no_database_connection(stack: Stack) -> None:
    """Bug: each handler thread kept the connection its input read opened; a worker runs hundreds
    of handler threads, and PostgreSQL refused clients ("too many clients already", found by the
    throughput benchmark)."""
    execution_ids = [stack.submit(fan_out_of_inputs(f"inputs-{i}")) for i in range(EXECUTIONS)]
    for execution_id in execution_ids:
        response = requests.post(stack.url(f"/workflows/{execution_id}/trigger"), timeout=30)
        assert response.status_code == 200, response.text
    for execution_id in execution_ids:
        state = stack.wait_finished(execution_id)
        assert state["status"] == "COMPLETED", state

    held = worker_connections(stack)
    print(f"worker holds {held} database connection(s)")
    assert held <= MOST_CONNECTIONS
