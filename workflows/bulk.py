"""Bulk writes of node rows, for the two places where the ORM's per-row cost dominates.

Django's bulk_create and bulk_update build several expression objects per row and value; the
scheduler writes every row it touched once per batch, and a submission inserts one row per node
(100,000 for a large workflow). These functions send plain parameter tuples instead: COPY or one
executemany per call, with values prepared by the model fields themselves.
"""

from collections.abc import Iterable, Sequence

from django.db import connection

from workflows.models import NodeRun


def _quoted(name: str) -> str:
    return connection.ops.quote_name(name)


def update_nodes(nodes: Sequence[NodeRun], field_names: Sequence[str]) -> None:
    """Write the given fields of each row: one prepared UPDATE, executed for every row."""
    if not nodes:
        return
    fields = [NodeRun._meta.get_field(name) for name in field_names]
    assignments = ", ".join(f"{_quoted(field.column)} = %s" for field in fields)
    statement = f"UPDATE {_quoted(NodeRun._meta.db_table)} SET {assignments} WHERE {_quoted('id')} = %s"
    rows = [
        (*(field.get_db_prep_save(getattr(node, field.attname), connection) for field in fields), node.pk)
        for node in nodes
    ]
    with connection.cursor() as cursor:
        cursor.executemany(statement, rows)


def insert_nodes(columns: Sequence[str], rows: Iterable[tuple]) -> None:
    """Insert rows of the given columns: COPY on PostgreSQL, one executemany on SQLite."""
    table = _quoted(NodeRun._meta.db_table)
    names = ", ".join(_quoted(column) for column in columns)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            placeholders = ", ".join(["%s"] * len(columns))
            cursor.executemany(f"INSERT INTO {table} ({names}) VALUES ({placeholders})", rows)
