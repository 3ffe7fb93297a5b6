"""A broadcast's fan-out: its audience written as Delivery rows, one chunk per transaction.

One transaction for a whole audience would outlast a task's time limit past a few million
deliveries, be rolled back there and start again for ever. So the audience is walked in
recipient id order, BROADCAST_CHUNK_SIZE recipients per transaction: a chunk locks the
broadcast, starts after the recipient its ``fanout_cursor`` names, writes its rows with COPY
and moves the cursor in the same commit, then publishes its own sends, which start while the
next chunk is written. A worker lost mid-chunk loses only that chunk's uncommitted rows, and
the next routing task (the lost one delivered again, or one the sweeper queues) writes it
again from the same cursor.

A routing task takes chunks for BROADCAST_TASK_SECONDS, however many broadcasts it was given,
then queues a task to carry on, so no task runs long however large the audience; one chunk
must fit well inside the soft time limit. Recipients created while a broadcast fans out are
in it if the cursor has not passed them yet (ids only grow).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import QuerySet

from channels.registry import primary_provider
from preferences.eligibility import CapLedger, audience_batches

from . import clock, enqueue
from .broadcasts import audience_queryset
from .models import Delivery, Notification
from .routing import TRANSIENT, claimable, mark_failed

# A type's modifiers in a column definition: "varchar(16)", "timestamp(3) with time zone".
MODIFIERS = re.compile(r"\(\d+(?:,\s*\d+)?\)")


@dataclass(frozen=True)
class Chunk:
    """What one chunk wrote: deliveries, the last recipient id it reached, whether more follow."""

    created: int
    last: int
    more: bool


def route_broadcasts(broadcasts: QuerySet) -> int:
    """Fan broadcasts out a chunk at a time, for as long as this task may; returns rows.

    One deadline for the whole task: once it has passed, the broadcast in progress and those
    not started yet are handed to a new task.
    """
    deadline = time.monotonic() + settings.BROADCAST_TASK_SECONDS
    waiting = list(broadcasts.only("id", "traffic"))
    created = 0
    for index, broadcast in enumerate(waiting):
        if index and time.monotonic() >= deadline:
            enqueue.route_on_commit(waiting[index:])
            return created
        # None: routed or failed, or another routing task is writing a chunk of it.
        while (chunk := _route_chunk(broadcast.id)) is not None:
            created += chunk.created
            if not chunk.more:
                break
            if time.monotonic() >= deadline:
                enqueue.route_on_commit(waiting[index:])
                return created
    return created


def _route_chunk(notification_id) -> Chunk | None:
    now = clock.now()
    with transaction.atomic():
        notification = claimable(Notification.objects.filter(id=notification_id)).first()
        if notification is None:
            return None
        after = notification.fanout_cursor or 0
        before = _last_delivery_id()
        try:
            with transaction.atomic():
                chunk = fan_out(notification, now, after, settings.BROADCAST_CHUNK_SIZE)
        except TRANSIENT:
            raise
        except Exception:  # noqa: BLE001 - logged with its traceback, then failed
            mark_failed(notification, now)
            return None
        done = {} if chunk.more else {"status": Notification.Status.ROUTED, "routed_at": now}
        Notification.objects.filter(id=notification.id).update(fanout_cursor=chunk.last, **done)
        if chunk.created:
            written = (before, _last_delivery_id())
            transaction.on_commit(
                lambda: enqueue.publish_pending_sends([notification.id], written), robust=True
            )
    return chunk


def _last_delivery_id() -> int:
    """The highest delivery id this transaction sees: a chunk's rows are numbered after the
    one before it and up to the one after it, so its sends are read back by primary key."""
    return Delivery.objects.order_by("-id").values_list("id", flat=True).first() or 0


def fan_out(
    notification: Notification, now: datetime, after: int = 0, limit: int | None = None
) -> Chunk:
    """Write one Delivery per recipient and channel of the audience past recipient ``after``.

    At most ``limit`` recipients (all, when None), in whole keyset batches of
    BROADCAST_BATCH_SIZE, each decided by the eligibility module in a constant number of
    queries; ``more`` costs one query more, asked only when the last batch was full.
    """
    ntype = notification.type
    audience = audience_queryset(notification.audience or {})
    providers = {channel: primary_provider(channel) for channel in ntype.channels}
    batch_size = min(settings.BROADCAST_BATCH_SIZE, limit or settings.BROADCAST_BATCH_SIZE)
    created = taken = 0
    last = after
    more = False
    for contacts, decisions in audience_batches(
        ntype, audience, list(ntype.channels), now, batch_size, after
    ):
        if not ntype.is_transactional:
            ledger = CapLedger(contacts, now)
            decisions = [ledger.admit(notification.id, d, ntype.traffic) for d in decisions]
        created += copy_deliveries(
            _delivery(notification, d, providers[d.channel], now) for d in decisions
        )
        taken += len(contacts)
        last = contacts[-1].id
        if limit is not None and taken >= limit:
            more = len(contacts) == batch_size and audience.filter(pk__gt=last).exists()
            break
    return Chunk(created, last, more)


def _delivery(notification: Notification, decision, provider: str, now: datetime) -> dict:
    """The columns of one Delivery that differ from a fresh row's defaults."""
    row = {
        "notification_id": notification.id,
        "recipient_id": decision.recipient_id,
        "channel": decision.channel,
        "traffic": notification.traffic,
        "provider": provider,
        "status_changed_at": now,
        "created_at": now,
        "updated_at": now,
    }
    if not decision.allowed:
        row["status"] = Delivery.Status.SKIPPED
        row["skip_reason"] = decision.skip_reason
    elif decision.digest:
        row["status"] = Delivery.Status.DIGESTED
    else:
        later = max(filter(None, [decision.defer_until, notification.send_at]), default=None)
        if later and later > now:
            row["status"] = Delivery.Status.DEFERRED
            row["next_attempt_at"] = later
    return row


def copy_deliveries(rows: Iterable[dict[str, Any]]) -> int:
    """Write Delivery rows (column values by field attname) with one COPY.

    COPY is the fastest way into PostgreSQL, many times ``bulk_create``; the rows are plain
    values over a template of the model's defaults, prepared for the database once, so no
    model instance is built per row. The chunk holds the broadcast's row lock, so nothing
    races it.
    """
    if connection.vendor != "postgresql":  # trial mode's SQLite
        objs = [Delivery(**row) for row in rows]
        Delivery.objects.bulk_create(objs, batch_size=1000)
        return len(objs)
    fields = [f for f in Delivery._meta.concrete_fields if not f.primary_key]
    fresh = Delivery()
    defaults = [f.get_db_prep_save(getattr(fresh, f.attname), connection) for f in fields]
    position = {f.attname: index for index, f in enumerate(fields)}
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    table = connection.ops.quote_name(Delivery._meta.db_table)
    # Binary: psycopg packs ids and times as they are, instead of spelling them out as text
    # for PostgreSQL to parse back (docs/performance.md). Binary rows need each column's
    # type, named without its modifiers ("varchar(16)" is "varchar").
    types = [MODIFIERS.sub("", f.db_type(connection)) for f in fields]
    count = 0
    with connection.cursor() as cursor:
        with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(types)
            for row in rows:
                # A copy of the defaults with the row's own values set: a row names 8 to 10
                # of the 24 columns, so asking it for each would be most of the work.
                values = defaults.copy()
                for name, value in row.items():
                    values[position[name]] = value
                # Each value is packed by its column's type, so it must be what that type's
                # dumper takes: a UUID, an int, a str, an aware datetime, a bool or None.
                # The rows and the model's defaults are; a test holds them to the ORM's.
                copy.write_row(values)
                count += 1
    return count
