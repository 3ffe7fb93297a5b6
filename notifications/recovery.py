"""Releasing parked deliveries and sweeping up work the broker lost.

Both take rows with ``FOR UPDATE SKIP LOCKED``, so overlapping runs on any number of beat
or worker processes never hand the same delivery out twice.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction

from . import clock, enqueue
from .models import Delivery, Notification
from .outcomes import fall_back

RELEASE_BATCH = 1000


def release_due(limit: int = RELEASE_BATCH) -> int:
    """Move deferred deliveries whose time has come back to pending and queue them."""
    now = clock.now()
    with transaction.atomic():
        rows = list(
            Delivery.objects.select_for_update(skip_locked=True)
            .filter(status=Delivery.Status.DEFERRED, next_attempt_at__lte=now)
            .order_by("next_attempt_at")
            .values_list("id", "traffic", "channel")[:limit]
        )
        if rows:
            Delivery.objects.filter(id__in=[r[0] for r in rows]).update(
                status=Delivery.Status.PENDING, next_attempt_at=None, updated_at=now
            )
            enqueue.sends_on_commit(rows)
    return len(rows)


def sweep_stuck(limit: int = RELEASE_BATCH) -> dict[str, int]:
    """Queue again what sat in accepted, pending or sending for longer than the timeout."""
    now = clock.now()
    cutoff = now - timedelta(seconds=settings.SWEEP_STUCK_AFTER_SECONDS)
    return {
        "notifications": _sweep_notifications(cutoff, limit),
        "pending": _sweep_pending(cutoff, now, limit),
        "sending": _sweep_sending(cutoff, now, limit),
    }


def _sweep_notifications(cutoff, limit: int) -> int:
    with transaction.atomic():
        stuck = list(
            Notification.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("type")
            .filter(status=Notification.Status.ACCEPTED, created_at__lte=cutoff)[:limit]
        )
        enqueue.route_on_commit(stuck)
    return len(stuck)


def _sweep_pending(cutoff, now, limit: int) -> int:
    with transaction.atomic():
        rows = list(
            Delivery.objects.select_for_update(skip_locked=True)
            .filter(status=Delivery.Status.PENDING, updated_at__lte=cutoff)
            .values_list("id", "traffic", "channel")[:limit]
        )
        # Touch them so the next sweep waits a full timeout again.
        Delivery.objects.filter(id__in=[r[0] for r in rows]).update(updated_at=now)
        enqueue.sends_on_commit(rows)
    return len(rows)


def _sweep_sending(cutoff, now, limit: int) -> int:
    """A delivery stuck in sending lost its worker mid-send: the provider may have it.

    It goes back to pending flagged possible_duplicate, alone in its own task, so a message
    that kills its worker is isolated from its batch; past its attempts it fails.
    """
    with transaction.atomic():
        stuck = list(
            Delivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("notification__type", "recipient")
            .filter(status=Delivery.Status.SENDING, claimed_at__lte=cutoff)[:limit]
        )
        exhausted = [d for d in stuck if d.attempts >= settings.MAX_ATTEMPTS.get(d.channel, 5)]
        retry = [d for d in stuck if d not in exhausted]
        Delivery.objects.filter(id__in=[d.id for d in retry]).update(
            status=Delivery.Status.PENDING, possible_duplicate=True, updated_at=now
        )
        Delivery.objects.filter(id__in=[d.id for d in exhausted]).update(
            status=Delivery.Status.FAILED,
            error_kind=Delivery.ErrorKind.AMBIGUOUS,
            error_message="the worker was lost while sending, on every attempt",
            status_changed_at=now,
            updated_at=now,
        )
        for delivery in retry:
            enqueue.sends_on_commit([(delivery.id, delivery.traffic, delivery.channel)])
    return len(stuck)


__all__ = ["release_due", "sweep_stuck", "fall_back"]
