"""Bulk writes, for the places where the ORM's per-row and per-statement costs dominate.

Django's bulk_create and bulk_update build several expression objects per row and value, and each
save() is a round trip; the scheduler writes every row it touched once per batch, and a
submission inserts one row per node (100,000 for a large workflow). These functions send plain
parameter tuples instead, with values prepared by the model fields themselves: COPY, or
executemany, several statements in one round trip on PostgreSQL.
"""

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TypeVar

import psycopg
from django.db import DEFAULT_DB_ALIAS, connection, connections, models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.sql import Query
from django.db.models.sql.compiler import SQLCompiler

from workflows.models import NodeRun

M = TypeVar("M", bound=models.Model)
READ_CHUNK = 400  # nodes per query: with their execution ids, under SQLite's oldest limit of 999 parameters


@dataclass(frozen=True)
class Statement:
    """One SQL statement and the parameter rows to execute it with."""

    sql: str
    rows: list[tuple]


def _quoted(name: str) -> str:
    return _db().ops.quote_name(name)


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
    rows = [
        (
            *(field.get_db_prep_save(getattr(obj, field.attname), db) for field in fields),
            meta.pk.get_db_prep_value(obj.pk, db),
        )
        for obj in objs
    ]
    return Statement(_update_sql(type(objs[0]), tuple(field_names)), rows)


def insert_statement(objs: Sequence[models.Model], field_names: Sequence[str]) -> Statement:
    """INSERT the objects (fields such as auto_now_add filled in as save() would); ids are not
    read back."""
    if not objs:
        return Statement("", [])
    db, meta = _db(), objs[0]._meta
    fields = [meta.get_field(name) for name in field_names]
    rows = [
        tuple(field.get_db_prep_save(field.pre_save(obj, add=True), db) for field in fields) for obj in objs
    ]
    return Statement(_insert_sql(type(objs[0]), tuple(field_names)), rows)


@cache
def _update_sql(model: type[models.Model], field_names: tuple[str, ...]) -> str:
    meta = model._meta
    assignments = ", ".join(f"{_quoted(meta.get_field(name).column)} = %s" for name in field_names)
    return f"UPDATE {_quoted(meta.db_table)} SET {assignments} WHERE {_quoted(meta.pk.column)} = %s"


@cache
def _insert_sql(model: type[models.Model], field_names: tuple[str, ...]) -> str:
    meta = model._meta
    columns = ", ".join(_quoted(meta.get_field(name).column) for name in field_names)
    placeholders = ", ".join(["%s"] * len(field_names))
    return f"INSERT INTO {_quoted(meta.db_table)} ({columns}) VALUES ({placeholders})"


def locked(model: type[M], pks: Collection[object]) -> list[M]:
    """The rows with these primary keys, locked until the transaction ends (FOR UPDATE where the
    database has it; SQLite's IMMEDIATE transactions lock the whole database anyway). Raw SQL:
    compiling the ORM query cost more than running it."""
    meta = model._meta
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    where = f"{_quoted(meta.pk.column)} IN ({_marks(pks)}){lock}"
    return _select(model, where, [meta.pk.get_db_prep_value(pk, connection) for pk in pks])


def node_rows(wanted: Mapping[str, Collection[str]]) -> list[NodeRun]:
    """The rows of these nodes, by execution id: one query per READ_CHUNK nodes.

    The condition is one `execution_id = ? AND node_id IN (...)` per execution, joined by OR,
    which both databases answer from the (execution, node) index; SQLite scans the whole table
    for the row-value form `(execution_id, node_id) IN (...)`.
    """
    execution_field = NodeRun._meta.get_field("execution").target_field
    pairs = [(execution_id, node_id) for execution_id, node_ids in wanted.items() for node_id in node_ids]
    rows: list[NodeRun] = []
    for start in range(0, len(pairs), READ_CHUNK):
        by_execution: dict[str, list[str]] = {}
        for execution_id, node_id in pairs[start : start + READ_CHUNK]:
            by_execution.setdefault(execution_id, []).append(node_id)
        terms, params = [], []
        for execution_id, node_ids in by_execution.items():
            terms.append(f"({_quoted('execution_id')} = %s AND {_quoted('node_id')} IN ({_marks(node_ids)}))")
            params += [execution_field.get_db_prep_value(execution_id, connection), *node_ids]
        rows += _select(NodeRun, " OR ".join(terms), params)
    return rows


def _select(model: type[M], where: str, params: Sequence[object]) -> list[M]:
    """Model instances of the rows matching `where`, converted as the ORM converts them. Rows
    are fetched before anything reads the cursor's description, which is what a psycopg
    pipeline needs (Django's raw() reads the description first)."""
    select, names, compiler, converters = _reader(model)
    with connection.cursor() as cursor:
        cursor.execute(f"{select} WHERE {where}", params)
        rows = cursor.fetchall()
    if converters:
        rows = compiler.apply_converters(rows, converters)
    return [model.from_db(DEFAULT_DB_ALIAS, names, row) for row in rows]


@cache
def _reader(model: type[models.Model]) -> tuple[str, list[str], SQLCompiler, dict]:
    """What reading a model's rows needs, worked out once per model: the SELECT of every
    concrete column, the attribute names, and the ORM's value converters."""
    db, meta = _db(), model._meta
    fields = meta.concrete_fields
    columns = ", ".join(_quoted(field.column) for field in fields)
    compiler = db.ops.compiler("SQLCompiler")(Query(model), db, DEFAULT_DB_ALIAS)
    converters = compiler.get_converters([field.get_col(meta.db_table) for field in fields])
    select = f"SELECT {columns} FROM {_quoted(meta.db_table)}"
    return select, [field.attname for field in fields], compiler, converters


def _marks(values: Collection[object]) -> str:
    return ", ".join(["%s"] * len(values))


def execute_together(statements: Iterable[Statement]) -> None:
    """Execute the statements in order. On PostgreSQL in one pipeline, so one round trip, with
    server-side parameters instead of Django's client-side quoting of every value. The raw
    cursor bypasses Django's query log and execute wrappers."""
    wanted = [statement for statement in statements if statement.rows]
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            for statement in wanted:
                cursor.executemany(statement.sql, statement.rows)
        return
    connection.ensure_connection()
    with (
        connection.wrap_database_errors,
        connection.connection.pipeline(),
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
