"""Bulk writes, for the places where the ORM's per-row and per-statement costs dominate.

Django's bulk_create and bulk_update build several expression objects per row and value, and each
save() is a round trip; the scheduler writes every row it touched once per batch, and a
submission inserts one row per node (100,000 for a large workflow). These functions send plain
parameter tuples instead, with values prepared by the model fields themselves: COPY, or
executemany, several statements in one round trip on PostgreSQL.
"""

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from django.db import connection, models
from django.db.models.query import RawQuerySet

from workflows.models import NodeRun


@dataclass(frozen=True)
class Statement:
    """One SQL statement and the parameter rows to execute it with."""

    sql: str
    rows: list[tuple]


def _quoted(name: str) -> str:
    return connection.ops.quote_name(name)


def update_statement(objs: Sequence[models.Model], field_names: Sequence[str]) -> Statement:
    """UPDATE the given fields of each object, by primary key."""
    if not objs:
        return Statement("", [])
    meta = objs[0]._meta
    fields = [meta.get_field(name) for name in field_names]
    assignments = ", ".join(f"{_quoted(field.column)} = %s" for field in fields)
    sql = f"UPDATE {_quoted(meta.db_table)} SET {assignments} WHERE {_quoted(meta.pk.column)} = %s"
    rows = [
        (*(field.get_db_prep_save(getattr(obj, field.attname), connection) for field in fields), obj.pk)
        for obj in objs
    ]
    return Statement(sql, rows)


def insert_statement(objs: Sequence[models.Model], field_names: Sequence[str]) -> Statement:
    """INSERT the objects (fields such as auto_now_add filled in as save() would); ids are not
    read back."""
    if not objs:
        return Statement("", [])
    meta = objs[0]._meta
    fields = [meta.get_field(name) for name in field_names]
    columns = ", ".join(_quoted(field.column) for field in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    sql = f"INSERT INTO {_quoted(meta.db_table)} ({columns}) VALUES ({placeholders})"
    rows = [
        tuple(field.get_db_prep_save(field.pre_save(obj, add=True), connection) for field in fields)
        for obj in objs
    ]
    return Statement(sql, rows)


def locked(model: type[models.Model], pks: Collection[object]) -> RawQuerySet:
    """The rows with these primary keys, locked until the transaction ends (FOR UPDATE where the
    database has it; SQLite's IMMEDIATE transactions lock the whole database anyway). Raw SQL:
    compiling the ORM query cost more than running it."""
    meta = model._meta
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    sql = f"SELECT * FROM {_quoted(meta.db_table)} WHERE {_quoted(meta.pk.column)} IN ({_marks(pks)}){lock}"
    return model.objects.raw(sql, [meta.pk.get_db_prep_value(pk, connection) for pk in pks])


def node_rows(execution_id: object, node_ids: Collection[str]) -> RawQuerySet:
    """These nodes' rows of one execution."""
    meta = NodeRun._meta
    sql = (
        f"SELECT * FROM {_quoted(meta.db_table)} WHERE {_quoted('execution_id')} = %s"
        f" AND {_quoted('node_id')} IN ({_marks(node_ids)})"
    )
    execution_pk = meta.get_field("execution").target_field.get_db_prep_value(execution_id, connection)
    return NodeRun.objects.raw(sql, [execution_pk, *node_ids])


def _marks(values: Collection[object]) -> str:
    return ", ".join(["%s"] * len(values))


def execute_together(statements: Iterable[Statement]) -> None:
    """Execute the statements in order; on PostgreSQL in one pipeline, so one round trip."""
    wanted = [statement for statement in statements if statement.rows]
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            for statement in wanted:
                cursor.executemany(statement.sql, statement.rows)
            return
        with connection.wrap_database_errors, connection.connection.pipeline():
            for statement in wanted:
                cursor.cursor.executemany(statement.sql, statement.rows)


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
