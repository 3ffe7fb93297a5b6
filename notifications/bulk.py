"""Writing many rows in one statement, where Django's bulk helpers need two or cost more.

Django's ``bulk_update`` builds a CASE expression per field per row in Python; for a send
batch that cost more than sending the mail. ``UPDATE ... FROM (VALUES ...)`` does the same
in one statement that PostgreSQL plans once. ``bulk_create(ignore_conflicts=True)`` does not
say which rows it inserted, so the API had to read them back; ``insert_new`` asks with
``RETURNING``. ``upsert`` is ``bulk_create(update_conflicts=True)`` without its Python cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import connection
from django.db.models import Model
from django.db.models.fields import AutoFieldMixin


def bulk_set(model: type[Model], rows: Sequence[Model], field_names: Sequence[str]) -> None:
    """Write ``field_names`` of every row, matched by primary key."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        model.objects.bulk_update(rows, field_names)  # trial mode's SQLite
        return
    fields = [model._meta.get_field(name) for name in field_names]
    pk = model._meta.pk
    quote = connection.ops.quote_name
    columns = [quote(f.column) for f in fields]
    # Each value is cast to its column's type: parameters arrive untyped.
    casts = [f"v.{c}::{f.db_type(connection)}" for c, f in zip(columns, fields, strict=True)]
    assignments = ", ".join(f"{c} = {cast}" for c, cast in zip(columns, casts, strict=True))
    placeholders = "(" + ", ".join(["%s"] * (len(fields) + 1)) + ")"
    values = ", ".join([placeholders] * len(rows))
    params: list = []
    for row in rows:
        params.append(pk.get_db_prep_value(row.pk, connection))
        for field in fields:
            value = field.get_db_prep_save(getattr(row, field.attname), connection)
            params.append(value)
    table = quote(model._meta.db_table)
    # Names come quoted from the model's own metadata; every value is a parameter.
    key = quote(pk.column)
    sql = " ".join(
        [
            f"UPDATE {table} AS t SET {assignments}",  # noqa: S608 - names, not values
            f"FROM (VALUES {values}) AS v({key}, {', '.join(columns)})",
            f"WHERE t.{key} = v.{key}::{pk.db_type(connection)}",
        ]
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def insert_new(model: type[Model], rows: Sequence[Model]) -> set[Any]:
    """Insert rows whose primary keys are set, skipping conflicts; the keys that went in.

    One ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` (PostgreSQL, and SQLite in trial mode):
    a row that hit a unique constraint (a replayed idempotency key) is left out of the answer.
    """
    if not rows:
        return set()
    pk = model._meta.pk
    sql, params = _insert(model, rows, model._meta.concrete_fields)
    sql += f" ON CONFLICT DO NOTHING RETURNING {connection.ops.quote_name(pk.column)}"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {pk.to_python(value) for (value,) in cursor.fetchall()}


def upsert(model: type[Model], rows: Sequence[Model], unique: str, update: Sequence[str]) -> None:
    """Insert rows, or on a conflict over ``unique`` overwrite the ``update`` fields only.

    What ``bulk_create(update_conflicts=True)`` does, for a third of its Python time: the API
    upserts the recipients of every event it accepts. An empty ``update`` keeps existing rows.
    """
    if not rows:
        return
    quote = connection.ops.quote_name
    # Serial ids are left to the database.
    fields = [f for f in model._meta.concrete_fields if not isinstance(f, AutoFieldMixin)]
    sql, params = _insert(model, rows, fields)
    target = quote(model._meta.get_field(unique).column)
    columns = [quote(model._meta.get_field(name).column) for name in update]
    action = (
        "UPDATE SET " + ", ".join(f"{c} = EXCLUDED.{c}" for c in columns) if columns else "NOTHING"
    )
    with connection.cursor() as cursor:
        cursor.execute(f"{sql} ON CONFLICT ({target}) DO {action}", params)


def _insert(model: type[Model], rows: Sequence[Model], fields: Sequence) -> tuple[str, list]:
    """``INSERT INTO table (columns) VALUES (...), ...`` for ``fields`` of every row."""
    quote = connection.ops.quote_name
    placeholders = "(" + ", ".join(["%s"] * len(fields)) + ")"
    params: list = []
    for row in rows:
        for field in fields:
            # pre_save fills auto_now(_add) fields as Model.save would.
            params.append(field.get_db_prep_save(field.pre_save(row, True), connection))
    sql = " ".join(
        [
            f"INSERT INTO {quote(model._meta.db_table)}",  # noqa: S608 - names, not values
            f"({', '.join(quote(f.column) for f in fields)})",
            f"VALUES {', '.join([placeholders] * len(rows))}",
        ]
    )
    return sql, params
