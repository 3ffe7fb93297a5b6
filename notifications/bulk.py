"""Writing many rows' changed fields in one statement.

Django's ``bulk_update`` builds a CASE expression per field per row in Python; for a send
batch that cost more than sending the mail. ``UPDATE ... FROM (VALUES ...)`` does the same
in one statement that PostgreSQL plans once.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connection
from django.db.models import Model


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
