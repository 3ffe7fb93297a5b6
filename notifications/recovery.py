"""Releasing parked deliveries and sweeping up work the broker lost.

Both take rows with ``FOR UPDATE SKIP LOCKED``, so overlapping runs on any number of beat
or worker processes never hand the same delivery out twice.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F

from . import clock, enqueue, journal
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
            Notification.objects.select_for_update(skip_locked=True).filter(
                status=Notification.Status.ACCEPTED, created_at__lte=cutoff
            )[:limit]
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
    """A delivery stuck in sending lost its worker mid-batch; the journal says how far it got.

    Taken by the provider: recorded as sent, never sent again. Never tried: back to pending
    as it was. In flight, or unknown (no journal): the provider may have it, so it goes back
    flagged possible_duplicate, alone in its own task, so a message that kills its worker
    is cut off from its batch and fails once its attempts are spent.
    """
    with transaction.atomic():
        stuck = list(
            Delivery.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(status=Delivery.Status.SENDING, claimed_at__lte=cutoff)
            .only("id", "traffic", "channel", "attempts")[:limit]
        )
        known = journal.progress([d.id for d in stuck])
        sent = {d.id: known[d.id][1] for d in stuck if known.get(d.id, ("",))[0] == journal.SENT}
        untried = [d for d in stuck if known.get(d.id, ("",))[0] == journal.CLAIMED]
        in_doubt = [d for d in stuck if d.id not in sent and d not in untried]
        exhausted = [d for d in in_doubt if d.attempts >= settings.MAX_ATTEMPTS.get(d.channel, 5)]
        retry = [d for d in in_doubt if d not in exhausted]
        for delivery_id, message_id in sent.items():
            Delivery.objects.filter(id=delivery_id).update(
                status=Delivery.Status.SENT,
                provider_message_id=message_id[:255],
                sent_at=now,
                status_changed_at=now,
                updated_at=now,
            )
        # Claiming counted an attempt the worker never made.
        Delivery.objects.filter(id__in=[d.id for d in untried]).update(
            status=Delivery.Status.PENDING, attempts=F("attempts") - 1, updated_at=now
        )
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
        enqueue.sends_on_commit((d.id, d.traffic, d.channel) for d in untried)
        for delivery in retry:
            enqueue.sends_on_commit([(delivery.id, delivery.traffic, delivery.channel)])
    return len(stuck)


__all__ = ["release_due", "sweep_stuck", "fall_back"]
