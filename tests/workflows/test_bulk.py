"""The scheduler's plain-SQL reads: whole batches in few queries, each answered from the index."""

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from workflows import bulk, services
from workflows.models import NodeRun

pytestmark = pytest.mark.django_db


def chain(length: int) -> dict[str, Any]:
    nodes = [
        {"id": f"n{i}", "handler": "llm", "dependencies": [f"n{i - 1}"] if i else [], "config": {"i": i}}
        for i in range(length)
    ]
    return {"name": "chain", "dag": {"nodes": nodes}}


def test_node_rows_reads_every_asked_node_of_several_executions_across_query_chunks() -> None:
    big = str(services.workflow_submit(data=chain(bulk.READ_CHUNK + 10)).pk)
    small = str(services.workflow_submit(data=chain(5)).pk)
    wanted = {big: [f"n{i}" for i in range(bulk.READ_CHUNK + 10)], small: ["n0", "n4", "missing"]}

    with CaptureQueriesContext(connection) as queries:
        rows = bulk.node_rows(wanted)

    assert len(queries) == 2  # READ_CHUNK + 13 nodes
    assert sorted((str(row.execution_id), row.node_id) for row in rows) == sorted(
        [(big, f"n{i}") for i in range(bulk.READ_CHUNK + 10)] + [(small, "n0"), (small, "n4")]
    )
    row = next(row for row in rows if str(row.execution_id) == small and row.node_id == "n4")
    assert isinstance(row, NodeRun) and (row.position, row.handler, row.pending_deps) == (4, "llm", 1)


def test_node_rows_is_answered_from_the_index_not_a_table_scan() -> None:
    """Per event the scheduler must touch only the nodes it names, however large the table."""
    first = str(services.workflow_submit(data=chain(50)).pk)
    second = str(services.workflow_submit(data=chain(50)).pk)
    with CaptureQueriesContext(connection) as queries:
        bulk.node_rows({first: ["n1", "n2"], second: ["n3"]})
    (query,) = queries.captured_queries
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(f"EXPLAIN QUERY PLAN {query['sql']}")
            plan = " ".join(str(step[-1]) for step in cursor.fetchall())
            assert "SEARCH workflows_noderun USING INDEX" in plan and "SCAN workflows_noderun" not in plan
        else:
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute(f"EXPLAIN {query['sql']}")
            plan = " ".join(step[0] for step in cursor.fetchall())
            assert "Index" in plan and "Seq Scan" not in plan
