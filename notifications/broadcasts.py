"""Broadcasts: one notification type to an audience, fanned out in the database.

A broadcast is a Notification whose ``audience`` says who gets it: everyone, or the
recipients whose attributes contain given values and who carry given tags. Accepting one is
accepting an event (same idempotency, same routing task); routing calls ``fan_out``, which
walks the audience in keyset batches, decides each batch with the one eligibility module
(``audience_batches``, a constant number of queries per batch), writes the Delivery rows with
PostgreSQL COPY, and queues the sends in batches of delivery ids.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Count, Q, QuerySet

from channels.registry import primary_provider
from preferences.eligibility import CapLedger, audience_batches

from . import services
from .models import Delivery, Notification, Recipient

AUDIENCE_KEYS = {"all", "attributes", "tags"}


class AudienceError(ValueError):
    """The audience filter is malformed; ``fields`` says where."""

    def __init__(self, message: str):
        super().__init__(message)
        self.fields = {"audience": [message]}


def audience_check(audience: Any) -> dict[str, Any]:
    """The audience in its canonical form, or AudienceError."""
    if not isinstance(audience, dict) or not audience:
        raise AudienceError('Give {"all": true}, or "attributes" and/or "tags" filters.')
    unknown = set(audience) - AUDIENCE_KEYS
    if unknown:
        raise AudienceError(f"Unknown audience keys: {', '.join(sorted(unknown))}.")
    if "all" in audience:
        if audience["all"] is not True or len(audience) > 1:
            raise AudienceError('"all" must be true and stand alone.')
        return {"all": True}
    attributes = audience.get("attributes", {})
    tags = audience.get("tags", [])
    if not isinstance(attributes, dict) or any(
        not isinstance(v, str | int | float | bool) or v is None for v in attributes.values()
    ):
        raise AudienceError('"attributes" maps attribute names to plain values.')
    if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
        raise AudienceError('"tags" is a list of tag names.')
    if not attributes and not tags:
        raise AudienceError('An empty filter would match everyone: say {"all": true}.')
    return {k: v for k, v in (("attributes", attributes), ("tags", sorted(set(tags)))) if v}


def audience_queryset(audience: dict[str, Any]) -> QuerySet:
    """Recipients an audience names; attributes must all match, every tag must be there."""
    if connection.vendor != "postgresql" and (audience.get("attributes") or audience.get("tags")):
        # Trial mode's SQLite has no JSON containment: the few recipients are matched here.
        rows = Recipient.objects.values_list("pk", "attributes", "tags")
        return Recipient.objects.filter(
            pk__in=[pk for pk, *row in rows if _matches(audience, *row)]
        )
    query = Q()
    if audience.get("attributes"):
        query &= Q(attributes__contains=audience["attributes"])
    if audience.get("tags"):
        query &= Q(tags__contains=audience["tags"])
    return Recipient.objects.filter(query)


def _matches(audience: dict[str, Any], attributes: Any, tags: Any) -> bool:
    """What PostgreSQL's ``@>`` answers for a recipient's attributes and tags."""
    attributes = attributes if isinstance(attributes, dict) else {}
    tags = tags if isinstance(tags, list) else []
    for name, wanted in audience.get("attributes", {}).items():
        value = attributes.get(name)
        # JSON has no 1 == true: a bool matches a bool only (1 == 1.0 as in JSON).
        if isinstance(value, bool) != isinstance(wanted, bool) or value != wanted:
            return False
    return set(audience.get("tags", [])) <= {t for t in tags if isinstance(t, str)}


def broadcast_accept(
    *,
    api_key_id: str,
    type_key: str,
    audience: dict[str, Any],
    data: dict[str, Any],
    idempotency_key: str | None = None,
    send_at: datetime | None = None,
    fingerprint: str = "",
) -> services.Accepted:
    """Accept a broadcast (idempotent like an event); routing fans it out after commit."""
    event = services.EventRequest(
        type_key=type_key,
        recipients=[],
        data=data,
        idempotency_key=idempotency_key,
        send_at=send_at,
        fingerprint=fingerprint,
        audience=audience_check(audience),
    )
    return services.notification_accept(api_key_id=api_key_id, event=event)


def fan_out(notification: Notification, now: datetime) -> int:
    """Write one Delivery per recipient and channel of the audience; returns how many."""
    ntype = notification.type
    audience = audience_queryset(notification.audience or {})
    providers = {channel: primary_provider(channel) for channel in ntype.channels}
    _without_jit()
    created = 0
    for contacts, decisions in audience_batches(
        ntype, audience, list(ntype.channels), now, settings.BROADCAST_BATCH_SIZE
    ):
        if not ntype.is_transactional:
            ledger = CapLedger(contacts, now)
            decisions = [ledger.admit(notification.id, d, ntype.traffic) for d in decisions]
        created += copy_deliveries(
            _delivery(notification, d, providers[d.channel], now) for d in decisions
        )
    return created


def _without_jit() -> None:
    """No JIT compilation for the rest of the routing transaction.

    A batch's audience query (every recipient's choices resolved in SQL) is estimated costly
    enough for PostgreSQL to JIT-compile it, and compiling took ~45 ms of a ~100 ms query,
    every batch. Set per transaction, not per connection, so it holds through any pooler.
    """
    if connection.vendor == "postgresql" and connection.in_atomic_block:
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL jit = off")


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
    model instance is built per row. Routing holds the notification's row lock, so nothing
    races it.
    """
    if connection.vendor != "postgresql":  # trial mode's SQLite
        objs = [Delivery(**row) for row in rows]
        Delivery.objects.bulk_create(objs, batch_size=1000)
        return len(objs)
    fields = [f for f in Delivery._meta.concrete_fields if not f.primary_key]
    fresh = Delivery()
    defaults = [f.get_db_prep_save(getattr(fresh, f.attname), connection) for f in fields]
    names = [f.attname for f in fields]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    table = connection.ops.quote_name(Delivery._meta.db_table)
    count = 0
    with connection.cursor() as cursor:
        with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for row in rows:
                # Every value here is plain (ids, text, datetimes): psycopg adapts it as is.
                copy.write_row(
                    [row.get(name, default) for name, default in zip(names, defaults, strict=True)]
                )
                count += 1
    return count


def progress(notification: Notification) -> dict[str, Any]:
    """Deliveries of a broadcast by status, and in all."""
    counts = Counter(
        dict(
            Delivery.objects.filter(notification=notification)
            .values("status")
            .annotate(n=Count("id"))
            .values_list("status", "n")
        )
    )
    return {"total": sum(counts.values()), "by_status": dict(sorted(counts.items()))}
