"""Writing many rows in one statement, where Django's bulk helpers need two or cost more.

Django's ``bulk_update`` builds a CASE expression per field per row in Python; for a send
batch that cost more than sending the mail. ``UPDATE ... FROM (VALUES ...)`` does the same
in one statement that PostgreSQL plans once. ``bulk_create(ignore_conflicts=True)`` does not
say which rows it inserted, so the API had to read them back; ``insert_new`` asks with
``RETURNING``. ``upsert_statement`` is ``bulk_create(update_conflicts=True)`` without its
Python cost.

On PostgreSQL many rows travel as one array per column (``UNNEST``, as Django's own
``bulk_create`` does since 5.2), not as a ``VALUES`` list: the statement's text is then short
and the same for any number of rows, so psycopg parses it once per process instead of
scanning thousands of placeholders per call, and PostgreSQL parses a few parameters, not a
list of thousands.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models import Model
from django.db.models.fields import AutoFieldMixin


def _connection():
    """The default connection itself. ``django.db.connection`` is a proxy that finds it again
    (a thread-local lookup) on every attribute read, and preparing one value for a column
    reads several: for a bulk call of 100 events, a ninth of the view's time."""
    return connections[DEFAULT_DB_ALIAS]


def bulk_set(model: type[Model], rows: Sequence[Model], field_names: Sequence[str]) -> None:
    """Write ``field_names`` of every row, matched by primary key."""
    if not rows:
        return
    connection = _connection()
    if connection.vendor != "postgresql":
        model.objects.bulk_update(rows, field_names)  # trial mode's SQLite
        return
    fields = [model._meta.get_field(name) for name in field_names]
    pk = model._meta.pk
    quote = connection.ops.quote_name
    key = quote(pk.column)
    columns = [quote(f.column) for f in fields]
    table = quote(model._meta.db_table)
    if len(rows) == 1:
        # A batch of one (most transactional sends): plain parameters cost a third of the
        # arrays' Python and let PostgreSQL skip the join.
        [row] = rows
        sets = ", ".join(f"{c} = %s" for c in columns)
        values = [f.get_db_prep_save(getattr(row, f.attname), connection) for f in fields]
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET {sets} WHERE {key} = %s",  # noqa: S608 - names only
                [*values, pk.get_db_prep_value(row.pk, connection)],
            )
        return
    assignments = ", ".join(f"{c} = v.{c}" for c in columns)
    arrays = [[pk.get_db_prep_value(row.pk, connection) for row in rows]]
    arrays += [
        [field.get_db_prep_save(getattr(row, field.attname), connection) for row in rows]
        for field in fields
    ]
    # Names come quoted from the model's own metadata; every value is a parameter.
    sql = " ".join(
        [
            f"UPDATE {table} AS t SET {assignments}",  # noqa: S608
            f"FROM {_unnest([pk, *fields])} AS v({key}, {', '.join(columns)})",
            f"WHERE t.{key} = v.{key}",
        ]
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, arrays)


# One SQL statement and its parameters.
Statement = tuple[str, list]


def insert_new(
    model: type[Model], rows: Sequence[Model], *, first: Sequence[Statement] = ()
) -> set[Any]:
    """Insert rows whose primary keys are set, skipping conflicts; the keys that went in.

    ``INSERT ... ON CONFLICT DO NOTHING RETURNING``: a row that hit a unique constraint (a
    replayed idempotency key) is left out of the answer. The ``first`` statements (upserts)
    run in the same atomic step. On PostgreSQL they become data-modifying ``WITH`` clauses of
    the insert, so the whole write is one statement and needs no BEGIN and COMMIT round
    trips; elsewhere (trial mode's SQLite) they run one by one in a transaction.
    """
    if not rows:
        return set()
    pk = model._meta.pk
    connection = _connection()
    sql, params = _insert(model, rows, model._meta.concrete_fields)
    sql += f" ON CONFLICT DO NOTHING RETURNING {connection.ops.quote_name(pk.column)}"
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            clauses = [f"w{i} AS ({before})" for i, (before, _) in enumerate(first)]
            if clauses:
                sql = f"WITH {', '.join(clauses)} {sql}"
            params = [p for _, before_params in first for p in before_params] + params
            cursor.execute(sql, params)
            inserted = cursor.fetchall()
        else:
            with transaction.atomic():
                for before, before_params in first:
                    cursor.execute(before, before_params)
                cursor.execute(sql, params)
                inserted = cursor.fetchall()
    return {pk.to_python(value) for (value,) in inserted}


def upsert_statement(
    model: type[Model], rows: Sequence[Model], unique: str, update: Sequence[str]
) -> Statement:
    """What ``bulk_create(update_conflicts=True)`` sends, for a third of its Python time.

    The API upserts the recipients of every event it accepts. An empty ``update`` keeps
    existing rows as they are.
    """
    connection = _connection()
    quote = connection.ops.quote_name
    # Serial ids are left to the database.
    fields = [f for f in model._meta.concrete_fields if not isinstance(f, AutoFieldMixin)]
    sql, params = _insert(model, rows, fields)
    target = quote(model._meta.get_field(unique).column)
    columns = [quote(model._meta.get_field(name).column) for name in update]
    action = (
        "UPDATE SET " + ", ".join(f"{c} = EXCLUDED.{c}" for c in columns) if columns else "NOTHING"
    )
    return f"{sql} ON CONFLICT ({target}) DO {action}", params


def _insert(model: type[Model], rows: Sequence[Model], fields: Sequence) -> Statement:
    """``INSERT INTO table (columns)`` the values of ``fields`` for every row."""
    connection = _connection()
    quote = connection.ops.quote_name
    head = (
        f"INSERT INTO {quote(model._meta.db_table)}"  # noqa: S608 - names, not values
        f" ({', '.join(quote(f.column) for f in fields)})"
    )

    def value(row: Model, field) -> Any:
        # pre_save fills auto_now(_add) fields as Model.save would.
        return field.get_db_prep_save(field.pre_save(row, True), connection)

    if connection.vendor == "postgresql" and len(rows) > 1:
        arrays = [[value(row, field) for row in rows] for field in fields]
        return f"{head} SELECT * FROM {_unnest(fields)}", arrays  # noqa: S608 - names only
    placeholders = "(" + ", ".join(["%s"] * len(fields)) + ")"
    params = [value(row, field) for row in rows for field in fields]
    return f"{head} VALUES {', '.join([placeholders] * len(rows))}", params


def _unnest(fields: Sequence) -> str:
    """``UNNEST`` of one array parameter per field, each cast to its column's type.

    The type's modifiers are dropped (``varchar``, not ``varchar(255)``), as Django does, so
    a cast never truncates a value the column would refuse.
    """
    connection = _connection()
    types = [field.db_type(connection).split("(")[0] for field in fields]
    return f"UNNEST({', '.join(f'(%s)::{db_type}[]' for db_type in types)})"
