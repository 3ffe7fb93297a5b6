"""Routing: turn accepted notifications into Delivery rows and queue their sends.

Eligibility plans (and writes nothing); this module writes the plan in bulk. The unique
first-hop constraint makes a replayed routing task a no-op. The number of queries is the
same for one recipient or a thousand.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from django.conf import settings
from django.db import transaction

from channels.registry import primary_provider
from preferences.eligibility import CapLedger, decide

from . import clock, enqueue
from .models import Delivery, Notification, Recipient, Traffic


def route_notifications(notification_ids: list[str]) -> int:
    """Route the given notifications that are still unrouted; returns deliveries created."""
    now = clock.now()
    with transaction.atomic():
        notifications = list(
            Notification.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("type")
            .filter(id__in=notification_ids, status=Notification.Status.ACCEPTED)
        )
        if not notifications:
            return 0
        events = [n for n in notifications if not n.is_broadcast]
        created = _plan_and_write(events, now) if events else 0
        for broadcast in (n for n in notifications if n.is_broadcast):
            from .broadcasts import fan_out

            created += fan_out(broadcast, now)
        Notification.objects.filter(id__in=[n.id for n in notifications]).update(
            status=Notification.Status.ROUTED, routed_at=now
        )
        _enqueue_pending([n.id for n in notifications])
    return created


def _plan_and_write(notifications: list[Notification], now: datetime) -> int:
    wanted = {external_id for n in notifications for external_id in n.recipient_ids}
    recipients = {r.external_id: r for r in Recipient.objects.filter(external_id__in=wanted)}
    rows: list[Delivery] = []
    ledger = CapLedger(recipients.values(), now)
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
    Delivery.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


def _recipients_of(notification: Notification, recipients: dict[str, Recipient]):
    return [recipients[i] for i in notification.recipient_ids if i in recipients]


def _delivery(notification, recipient, channel, decision, now) -> Delivery:
    delivery = Delivery(
        notification=notification,
        recipient=recipient,
        channel=channel,
        traffic=notification.type.traffic,
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


def _enqueue_pending(notification_ids: list) -> None:
    pending = list(
        Delivery.objects.filter(
            notification_id__in=notification_ids, status=Delivery.Status.PENDING
        ).values_list("id", "traffic", "channel")
    )
    urgent = [p for p in pending if p[1] == Traffic.TRANSACTIONAL]
    if settings.SEND_TRANSACTIONAL_INLINE and urgent and len(urgent) <= settings.SEND_BATCH_SIZE:
        # A password reset is sent by this routing task as soon as it commits: one broker
        # hop less on the path people wait for. Retries and fallbacks still go by queue.
        ids = [p[0] for p in urgent]
        transaction.on_commit(lambda: _send_now(ids), robust=True)
        pending = [p for p in pending if p[1] != Traffic.TRANSACTIONAL]
    enqueue.sends_on_commit(pending)


def _send_now(delivery_ids: list[int]) -> None:
    from .sending import send_deliveries

    send_deliveries(delivery_ids)
