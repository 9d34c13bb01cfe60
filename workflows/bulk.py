"""Bulk writes, for the places where the ORM's per-row and per-statement costs dominate.

Django's bulk_create and bulk_update build several expression objects per row and value, and each
save() is a round trip; the scheduler writes every row it touched once per batch, and a
submission inserts one row per node (100,000 for a large workflow). These functions send plain
parameter tuples instead, with values prepared by the model fields themselves: COPY, or
executemany, several statements in one round trip on PostgreSQL.
"""

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import psycopg
from django.db import DEFAULT_DB_ALIAS, connection, connections, models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.sql import Query

from workflows.models import NodeRun

M = TypeVar("M", bound=models.Model)


@dataclass(frozen=True)
class Statement:
    """One SQL statement and the parameter rows to execute it with."""

    sql: str
    rows: list[tuple]


def _quoted(name: str) -> str:
    return connection.ops.quote_name(name)


def _db() -> BaseDatabaseWrapper:
    """The connection itself: `django.db.connection` is a proxy that costs a lookup per use,
    which adds up over one call per field value."""
    return connections[DEFAULT_DB_ALIAS]


def update_statement(objs: Sequence[models.Model], field_names: Sequence[str]) -> Statement:
    """UPDATE the given fields of each object, by primary key."""
    if not objs:
        return Statement("", [])
    db, meta = _db(), objs[0]._meta
    fields = [meta.get_field(name) for name in field_names]
    assignments = ", ".join(f"{_quoted(field.column)} = %s" for field in fields)
    sql = f"UPDATE {_quoted(meta.db_table)} SET {assignments} WHERE {_quoted(meta.pk.column)} = %s"
    rows = [
        (
            *(field.get_db_prep_save(getattr(obj, field.attname), db) for field in fields),
            meta.pk.get_db_prep_value(obj.pk, db),
        )
        for obj in objs
    ]
    return Statement(sql, rows)


def insert_statement(objs: Sequence[models.Model], field_names: Sequence[str]) -> Statement:
    """INSERT the objects (fields such as auto_now_add filled in as save() would); ids are not
    read back."""
    if not objs:
        return Statement("", [])
    db, meta = _db(), objs[0]._meta
    fields = [meta.get_field(name) for name in field_names]
    columns = ", ".join(_quoted(field.column) for field in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    sql = f"INSERT INTO {_quoted(meta.db_table)} ({columns}) VALUES ({placeholders})"
    rows = [
        tuple(field.get_db_prep_save(field.pre_save(obj, add=True), db) for field in fields) for obj in objs
    ]
    return Statement(sql, rows)


def locked(model: type[M], pks: Collection[object]) -> list[M]:
    """The rows with these primary keys, locked until the transaction ends (FOR UPDATE where the
    database has it; SQLite's IMMEDIATE transactions lock the whole database anyway). Raw SQL:
    compiling the ORM query cost more than running it."""
    meta = model._meta
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    where = f"{_quoted(meta.pk.column)} IN ({_marks(pks)}){lock}"
    return _select(model, where, [meta.pk.get_db_prep_value(pk, connection) for pk in pks])


def node_rows(wanted: Mapping[str, Collection[str]]) -> list[NodeRun]:
    """The rows of these nodes, by execution id, in one query (row values: PostgreSQL, SQLite)."""
    execution_field = NodeRun._meta.get_field("execution").target_field
    pairs = [
        (execution_field.get_db_prep_value(execution_id, connection), node_id)
        for execution_id, node_ids in wanted.items()
        for node_id in node_ids
    ]
    where = f"({_quoted('execution_id')}, {_quoted('node_id')}) IN ({', '.join(['(%s, %s)'] * len(pairs))})"
    return _select(NodeRun, where, [value for pair in pairs for value in pair])


def _select(model: type[M], where: str, params: Sequence[object]) -> list[M]:
    """Model instances of the rows matching `where`, converted as the ORM converts them. Rows
    are fetched before anything reads the cursor's description, which is what a psycopg
    pipeline needs (Django's raw() reads the description first)."""
    meta = model._meta
    fields = meta.concrete_fields
    columns = ", ".join(_quoted(field.column) for field in fields)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {columns} FROM {_quoted(meta.db_table)} WHERE {where}", params)
        rows = cursor.fetchall()
    compiler = connection.ops.compiler("SQLCompiler")(Query(model), connection, connection.alias)
    converters = compiler.get_converters([field.get_col(meta.db_table) for field in fields])
    if converters:
        rows = compiler.apply_converters(rows, converters)
    names = [field.attname for field in fields]
    return [model.from_db(connection.alias, names, row) for row in rows]


def _marks(values: Collection[object]) -> str:
    return ", ".join(["%s"] * len(values))


@contextmanager
def pipelined() -> Iterator[None]:
    """On PostgreSQL, a pipeline around a transaction: BEGIN travels with the first query and
    COMMIT with the last writes, two round trips fewer per transaction."""
    if connection.vendor != "postgresql":
        yield
        return
    connection.ensure_connection()
    with connection.wrap_database_errors, connection.connection.pipeline():
        yield


def execute_together(statements: Iterable[Statement]) -> None:
    """Execute the statements in order. On PostgreSQL in one pipeline, so one round trip, with
    server-side parameters (a prepared statement per SQL text instead of Django's client-side
    quoting of every value)."""
    wanted = [statement for statement in statements if statement.rows]
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            for statement in wanted:
                cursor.executemany(statement.sql, statement.rows)
        return
    connection.ensure_connection()
    with (
        connection.wrap_database_errors,
        connection.connection.pipeline(),  # nests in pipelined()
        psycopg.Cursor(connection.connection) as cursor,
    ):
        for statement in wanted:
            cursor.executemany(statement.sql, statement.rows)


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
