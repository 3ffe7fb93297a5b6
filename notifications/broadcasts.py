"""Broadcasts: one notification type to an audience, fanned out in the database.

A broadcast is a Notification whose ``audience`` says who gets it: everyone, or the
recipients whose attributes contain given values and who carry given tags. Accepting one is
accepting an event (same idempotency, same routing task); routing calls ``fan_out``, which
walks the audience in keyset batches, decides each batch with the one eligibility module
(``decide_audience``, a constant number of queries per batch), writes the Delivery rows with
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
from preferences.eligibility import CapLedger, decide_audience

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
    query = Q()
    if audience.get("attributes"):
        query &= Q(attributes__contains=audience["attributes"])
    if audience.get("tags"):
        query &= Q(tags__contains=audience["tags"])
    return Recipient.objects.filter(query)


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
    size = settings.BROADCAST_BATCH_SIZE
    providers = {channel: primary_provider(channel) for channel in ntype.channels}
    created, last = 0, 0
    while True:
        batch = list(audience.filter(pk__gt=last).order_by("pk").only("id", "timezone")[:size])
        if not batch:
            return created
        last = batch[-1].pk
        members = Recipient.objects.filter(pk__in=[r.pk for r in batch])
        ledger = CapLedger(batch, now) if not ntype.is_transactional else None
        rows: list[Delivery] = []
        for channel in ntype.channels:
            for decision in decide_audience(ntype, members, channel, now, batch_size=size):
                if ledger is not None:
                    decision = ledger.admit(notification.id, decision, ntype.traffic)
                rows.append(_delivery(notification, decision, providers[channel], now))
        created += copy_deliveries(rows)


def _delivery(notification: Notification, decision, provider: str, now: datetime) -> Delivery:
    delivery = Delivery(
        notification_id=notification.id,
        recipient_id=decision.recipient_id,
        channel=decision.channel,
        traffic=notification.type.traffic,
        provider=provider,
        status_changed_at=now,
        created_at=now,
        updated_at=now,
    )
    if not decision.allowed:
        delivery.status = Delivery.Status.SKIPPED
        delivery.skip_reason = decision.skip_reason
    elif decision.digest:
        delivery.status = Delivery.Status.DIGESTED
    else:
        later = max(filter(None, [decision.defer_until, notification.send_at]), default=None)
        if later and later > now:
            delivery.status = Delivery.Status.DEFERRED
            delivery.next_attempt_at = later
    return delivery


def copy_deliveries(rows: Iterable[Delivery]) -> int:
    """Write Delivery rows with one COPY: the fastest way into PostgreSQL, many times
    ``bulk_create``. Routing holds the notification's row lock, so nothing races it."""
    rows = list(rows)
    if not rows:
        return 0
    if connection.vendor != "postgresql":
        Delivery.objects.bulk_create(rows, batch_size=1000)  # trial mode's SQLite
        return len(rows)
    fields = [f for f in Delivery._meta.concrete_fields if not f.primary_key]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    table = connection.ops.quote_name(Delivery._meta.db_table)
    with connection.cursor() as cursor:
        with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(
                    [f.get_db_prep_save(getattr(row, f.attname), connection) for f in fields]
                )
    return len(rows)


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
