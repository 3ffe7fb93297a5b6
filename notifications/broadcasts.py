"""Broadcasts: one notification type to an audience, fanned out in the database.

A broadcast is a Notification whose ``audience`` says who gets it: everyone, or the
recipients whose attributes contain given values and who carry given tags. Accepting one is
accepting an event (same idempotency, same routing task); routing hands it to
``fanout.route_broadcasts``, which walks the audience in keyset batches, decides each batch
with the one eligibility module (``audience_batches``, a constant number of queries per
batch), writes the Delivery rows with PostgreSQL COPY a chunk per transaction, and queues the
sends in batches of delivery ids.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import Count, Q, QuerySet

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
