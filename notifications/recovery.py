"""Releasing parked deliveries and sweeping up work the broker lost.

Both take rows with ``FOR UPDATE SKIP LOCKED``, so overlapping runs on any number of beat
or worker processes never hand the same delivery out twice.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction

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
            # status_changed_at too: the daily cap counts a message on its way by it, so one
            # released after local midnight counts for its new day, not the day it was parked.
            Delivery.objects.filter(id__in=[r[0] for r in rows]).update(
                status=Delivery.Status.PENDING,
                next_attempt_at=None,
                status_changed_at=now,
                updated_at=now,
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

    Taken by the provider: recorded as sent, never sent again. Anything else goes back to
    pending alone, in its own task, keeping the attempt its claim counted: a message that
    kills its worker, while in flight or while it is rendered, is cut off from its batch and
    fails once its attempts are spent. In flight, or unknown (no journal), the provider may
    have it: it is flagged possible_duplicate, and when it fails it never falls back. Never
    tried: not flagged, and when it fails the next hop takes it.
    """
    with transaction.atomic():
        stuck = list(
            Delivery.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(status=Delivery.Status.SENDING, claimed_at__lte=cutoff)
            .only("id", "traffic", "channel", "attempts", "claimed_at")[:limit]
        )
        known = journal.progress({d.id: d.claimed_at for d in stuck})
        state = {d.id: known.get(d.id, ("", ""))[0] for d in stuck}
        for delivery in stuck:
            if state[delivery.id] == journal.SENT:
                Delivery.objects.filter(id=delivery.id).update(
                    status=Delivery.Status.SENT,
                    provider_message_id=known[delivery.id][1][:255],
                    sent_at=now,
                    status_changed_at=now,
                    updated_at=now,
                )
        lost = [d for d in stuck if state[d.id] != journal.SENT]
        spent = {d.id for d in lost if d.attempts >= settings.MAX_ATTEMPTS.get(d.channel, 5)}
        retry = [d for d in lost if d.id not in spent]
        untried = {d.id for d in lost if state[d.id] == journal.CLAIMED}
        Delivery.objects.filter(id__in=[d.id for d in retry if d.id in untried]).update(
            status=Delivery.Status.PENDING, updated_at=now
        )
        Delivery.objects.filter(id__in=[d.id for d in retry if d.id not in untried]).update(
            status=Delivery.Status.PENDING, possible_duplicate=True, updated_at=now
        )
        for delivery in retry:
            enqueue.sends_on_commit([(delivery.id, delivery.traffic, delivery.channel)])
        _fail_lost(spent - untried, Delivery.ErrorKind.AMBIGUOUS, "while sending", now)
        fall_back(_fail_lost(spent & untried, Delivery.ErrorKind.TRANSIENT, "before sending", now))
    return len(stuck)


def _fail_lost(ids: set[int], kind: str, when: str, now) -> list[Delivery]:
    # In flight, the provider may have it: flagged, as a retry of it would be (a flag from
    # an earlier attempt stays either way, and keeps it from falling back).
    flag = {"possible_duplicate": True} if kind == Delivery.ErrorKind.AMBIGUOUS else {}
    Delivery.objects.filter(id__in=ids).update(
        status=Delivery.Status.FAILED,
        error_kind=kind,
        error_message=f"the worker was lost {when}, on the last attempt",
        status_changed_at=now,
        updated_at=now,
        **flag,
    )
    return list(
        Delivery.objects.filter(id__in=ids).select_related("notification__type", "recipient")
    )


__all__ = ["release_due", "sweep_stuck", "fall_back"]
