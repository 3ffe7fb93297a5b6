"""Routing: turn accepted notifications into Delivery rows and queue their sends.

Eligibility plans (and writes nothing); this module writes the plan in bulk. Routing takes
each notification under a row lock and only while it is still ``accepted``, so a replayed
routing task is a no-op (and the unique first-hop constraint backs that up). The number of
queries is the same for one recipient or a thousand.

A transactional event of at most one send batch is claimed by its routing transaction and
sent by the routing task as soon as that commits: a password reset goes out without a second
broker hop, a second transaction or a second look at preferences decided a moment before.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import QuerySet

from channels.registry import primary_provider
from preferences.eligibility import CapLedger, decide

from . import clock, doorbell, enqueue
from .journal import SendJournal
from .models import Delivery, Notification, Recipient, Traffic

log = logging.getLogger(__name__)


def route_notifications(notification_ids: list[str]) -> int:
    """Route the given notifications that are still unrouted; returns deliveries created.

    Events are routed together, in one transaction; each broadcast fans out in chunks of its
    own (notifications/fanout.py).
    """
    from .fanout import route_broadcasts  # fanout builds on this module's locking

    given = Notification.objects.filter(id__in=notification_ids)
    created = _route(given.filter(audience__isnull=True))
    broadcasts = given.filter(audience__isnull=False, status=Notification.Status.ACCEPTED)
    return created + route_broadcasts(broadcasts.order_by("created_at"))


def route_waiting(traffic: str) -> int:
    """Route the oldest events of one traffic class still waiting, a batch at a time.

    The routing doorbell's task (notifications/doorbell.py). It answers before it reads, and
    rings again when it took a full batch, so a backlog is routed by as many tasks in turn.
    """
    doorbell.answer(traffic)
    limit = settings.ROUTE_BATCH_SIZE
    return _route(waiting(traffic), limit, full=lambda: doorbell.ring(traffic))


def waiting(traffic: str) -> QuerySet:
    """Events of one traffic class waiting to be routed, oldest first.

    Read through the ``notification_waiting`` index (a test holds the plan to it).
    """
    return Notification.objects.filter(audience__isnull=True, traffic=traffic).order_by(
        "created_at"
    )


def claimable(candidates: QuerySet, limit: int | None = None) -> QuerySet:
    """The candidates still unrouted, locked for this transaction; others' locks skipped.

    FOR NO KEY UPDATE: routing changes no key, and the stronger FOR UPDATE would conflict
    with the key-share lock every new delivery of the notification takes (a fallback hop of a
    broadcast's earlier chunk, say), so either would wait or skip the other.
    """
    return (
        candidates.select_for_update(skip_locked=True, of=("self",), no_key=True)
        .select_related("type")
        .filter(status=Notification.Status.ACCEPTED)[:limit]
    )


def _route(candidates: QuerySet, limit: int | None = None, full=None) -> int:
    now = clock.now()
    with transaction.atomic():
        notifications = list(claimable(candidates, limit))
        if not notifications:
            return 0
        if full and len(notifications) == limit:
            transaction.on_commit(full, robust=True)
        try:
            with transaction.atomic():
                return _write(notifications, now)
        except TRANSIENT:
            raise
        except Exception:  # noqa: BLE001 - which event is at fault is found below
            if len(notifications) == 1:
                mark_failed(notifications[0], now)
                return 0
        # One event that cannot be routed (a type saved with bad channels, say) must not hold
        # up the others of its batch, which every later task would take again: one by one.
        created = 0
        for notification in notifications:
            try:
                with transaction.atomic():
                    created += _write([notification], now)
            except TRANSIENT:
                raise
            except Exception:  # noqa: BLE001 - logged with its traceback, then failed
                mark_failed(notification, now)
        return created


# The database gone away, or the task out of time: the task fails and the notifications
# wait, still accepted, for the next one.
TRANSIENT = (OperationalError, InterfaceError, SoftTimeLimitExceeded)


def mark_failed(notification: Notification, now: datetime) -> None:
    log.exception("notification %s cannot be routed; marked failed", notification.id)
    Notification.objects.filter(id=notification.id).update(
        status=Notification.Status.FAILED, routed_at=now
    )


def _write(notifications: list[Notification], now: datetime) -> int:
    """Write the deliveries of locked, unrouted events and queue their sends."""
    rows = _plan(notifications, now)
    urgent = _claim_urgent(rows, now)
    Delivery.objects.bulk_create(rows)
    Notification.objects.filter(id__in=[n.id for n in notifications]).update(
        status=Notification.Status.ROUTED, routed_at=now
    )
    if urgent:
        _send_after_commit(urgent)
    enqueue.sends_on_commit(
        (d.id, d.traffic, d.channel)
        for d in rows
        if d.status == Delivery.Status.PENDING  # the urgent ones are claimed already
    )
    return len(rows)


def _claim_urgent(rows: list[Delivery], now: datetime) -> list[Delivery]:
    """Transactional deliveries this task will send itself, claimed as they are written."""
    urgent = [
        d
        for d in rows
        if d.status == Delivery.Status.PENDING and d.traffic == Traffic.TRANSACTIONAL
    ]
    if not settings.SEND_TRANSACTIONAL_INLINE or len(urgent) > settings.SEND_BATCH_SIZE:
        return []
    for delivery in urgent:
        delivery.status = Delivery.Status.SENDING
        delivery.attempts = 1
        delivery.claimed_at = delivery.updated_at = now
    return urgent


def _send_after_commit(claimed: list[Delivery]) -> None:
    from .sending import send_claimed

    journal = SendJournal()
    # Noted before the claim commits, as sending.claim does: the sweeper reads it.
    journal.claimed({d.id: d.claimed_at for d in claimed})
    transaction.on_commit(lambda: send_claimed(claimed, journal), robust=True)


def _plan(notifications: list[Notification], now: datetime) -> list[Delivery]:
    """The Delivery rows of some events, decided by the eligibility module, unsaved."""
    wanted = {external_id for n in notifications for external_id in n.recipient_ids}
    recipients = {r.external_id: r for r in Recipient.objects.filter(external_id__in=wanted)}
    rows: list[Delivery] = []
    # The daily cap counts marketing only: a batch of receipts needs no cap lookup.
    marketing = any(n.traffic == Traffic.MARKETING for n in notifications)
    ledger = CapLedger(recipients.values() if marketing else (), now)
    by_type: dict[int, list[Notification]] = defaultdict(list)
    for notification in notifications:
        by_type[notification.type_id].append(notification)
    for group in by_type.values():
        ntype = group[0].type
        group_recipients = {r for n in group for r in _recipients_of(n, recipients)}
        decisions = {
            (d.recipient_id, d.channel): d
            for d in decide(ntype, group_recipients, ntype.channels, now)
        }
        for notification in group:
            for recipient in _recipients_of(notification, recipients):
                for channel in ntype.channels:
                    decision = ledger.admit(
                        notification.id, decisions[(recipient.id, channel)], ntype.traffic
                    )
                    rows.append(_delivery(notification, recipient, channel, decision, now))
    return rows


def _recipients_of(notification: Notification, recipients: dict[str, Recipient]):
    return [recipients[i] for i in notification.recipient_ids if i in recipients]


def _delivery(notification, recipient, channel, decision, now) -> Delivery:
    delivery = Delivery(
        notification=notification,
        recipient=recipient,
        channel=channel,
        traffic=notification.traffic,
        provider=primary_provider(channel),
        status_changed_at=now,
    )
    if not decision.allowed:
        delivery.status = Delivery.Status.SKIPPED
        delivery.skip_reason = decision.skip_reason
        return delivery
    if decision.digest:
        # Held for the recipient's next digest; the digest task folds it (never sent alone).
        delivery.status = Delivery.Status.DIGESTED
        return delivery
    later = max(filter(None, [decision.defer_until, notification.send_at]), default=None)
    if later and later > now:
        delivery.status = Delivery.Status.DEFERRED
        delivery.next_attempt_at = later
    return delivery
