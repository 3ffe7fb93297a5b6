"""Sending: claim a batch of deliveries, re-check eligibility, render, send, record.

A delivery is claimed (pending -> sending, attempts + 1) before anything is sent, under
``FOR NO KEY UPDATE SKIP LOCKED``, so any number of workers can be handed the same ids and
each delivery goes out once. One provider call per provider per batch.
"""

from __future__ import annotations

import logging
from collections import defaultdict

import jinja2
from celery.exceptions import SoftTimeLimitExceeded
from django.db import transaction
from django.db.models import F, QuerySet

from channels.base import PERMANENT, TRANSIENT, Message, Outcome
from preferences.eligibility import decide

from . import clock, lookups, outcomes  # noqa: F401 - lookups registers field__any
from .dispatch import OUT_OF_TIME, OutOfTime, dispatch, not_sent, not_sent_ids, time_spent
from .journal import SendJournal
from .messages import (
    BUILD_FAILED,
    RENDER_FAILED,
    BadPayload,
    MessageBuilder,
    NoTemplate,
    summary_of,
)
from .models import Delivery, Notification

log = logging.getLogger(__name__)


def claim(delivery_ids: list[int], journal: SendJournal | None = None) -> list[Delivery]:
    """Move pending deliveries to sending and return them, each to exactly one caller."""
    now = clock.now()
    with transaction.atomic():
        # Found by id alone, then locked: with the status in the query, a planner that had
        # not yet seen a broadcast's rows (no ANALYZE since the fan-out) read every pending
        # delivery through the in-flight index to find these. Only those that look pending
        # are locked, so a batch published twice holds nothing another writer wants; the
        # status is read again from the locked rows, since another claim may have won.
        # Ids go as one array each (``__any``, notifications/lookups.py): as an IN list,
        # psycopg spelled out a placeholder per id in each of four queries.
        pending = _pending(Delivery.objects.filter(id__any=set(delivery_ids)))
        ids = _pending(
            Delivery.objects.select_for_update(skip_locked=True, no_key=True).filter(
                id__any=set(pending)
            )
        )
        if not ids:
            return []
        if journal is not None:
            # Noted before the claim commits: a claimed delivery always has its entry.
            journal.claimed(dict.fromkeys(ids, now))
        Delivery.objects.filter(id__any=set(ids)).update(
            status=Delivery.Status.SENDING,
            attempts=F("attempts") + 1,
            claimed_at=now,
            updated_at=now,
        )
    return _with_notifications(
        list(Delivery.objects.filter(id__any=set(ids)).select_related("recipient").order_by("id"))
    )


def _pending(deliveries: QuerySet) -> list[int]:
    """The ids of those deliveries that are pending, the status compared here, not in SQL."""
    rows = deliveries.values_list("id", "status")
    return [pk for pk, status in rows if status == Delivery.Status.PENDING]


def _with_notifications(deliveries: list[Delivery]) -> list[Delivery]:
    """Attach each delivery's notification and type, read once per notification.

    Joined per row instead, a batch parsed its notification's JSON once per delivery: for an
    event to thousands of recipients, the whole recipient list a hundred times a batch.
    Sending never reads that list, so it is not loaded at all.
    """
    notifications = (
        Notification.objects.select_related("type")
        .defer("recipient_ids")
        .in_bulk({d.notification_id for d in deliveries})
    )
    for delivery in deliveries:
        delivery.notification = notifications[delivery.notification_id]
    return deliveries


def send_deliveries(delivery_ids: list[int]) -> None:
    journal = SendJournal()
    deliveries = claim(delivery_ids, journal)
    if deliveries:
        send_claimed(_still_eligible(deliveries, clock.now()), journal)


def send_claimed(deliveries: list[Delivery], journal: SendJournal) -> None:
    """Render, send and record deliveries this process claimed (status ``sending``)."""
    if not deliveries:
        return
    builder = MessageBuilder()
    results: list[Outcome] = []
    by_provider: dict[str, list[Message]] = defaultdict(list)
    struck = False  # the task's soft time limit struck: nothing more is sent
    for index, delivery in enumerate(deliveries):
        if index and journal.out_of_time():
            # The batch's time is spent (SEND_BATCH_SECONDS): what is decided goes (the first
            # message always is), the rest is queued again unrendered, spending no attempt.
            results.extend(time_spent([d.id for d in deliveries[index:]]))
            break
        try:
            message, version = builder.build(delivery)
            summary = summary_of(message.content)
        except (NoTemplate, BadPayload, jinja2.TemplateError) as exc:
            results.append(Outcome.failed(delivery.id, PERMANENT, f"{RENDER_FAILED}{exc}"))
            continue
        except SoftTimeLimitExceeded:
            # Nothing has been sent yet: the rest of the batch is recorded as never tried,
            # retried without spending an attempt. The message being rendered spends one, so
            # one that always outlasts the limit fails after MAX_ATTEMPTS, not never; not as
            # RENDER_FAILED, as the template is not known to be at fault, so the channel's
            # backup providers stay open to it then. (Recorded within the hard limit's
            # margin; a database call cut short here may leave the connection unusable, and
            # then the batch falls to the sweeper.)
            rendering = f"{OUT_OF_TIME} while rendering it"
            results.append(
                Outcome.failed(delivery.id, TRANSIENT, rendering, reached_provider=False)
            )
            results.extend(not_sent_ids([d.id for d in deliveries[index + 1 :]], OUT_OF_TIME))
            struck = True
            break
        except Exception as exc:  # noqa: BLE001 - one message must not take its batch down
            # Unforeseen (data nested past the recursion limit, say): left to raise, it would
            # leave the whole batch in sending, claimed again and again by the sweeper.
            log.exception("delivery %s could not be built", delivery.id)
            results.append(Outcome.failed(delivery.id, PERMANENT, f"{BUILD_FAILED}{exc!r}"))
            continue
        delivery.template_version = version
        delivery.summary = summary
        by_provider[delivery.provider].append(message)
    for provider, messages in by_provider.items():
        if struck:
            results.extend(not_sent(messages, OUT_OF_TIME))
            continue
        try:
            results.extend(dispatch(provider, messages, journal))
        except OutOfTime as cut:
            # Past the soft limit nothing more is sent (the hard one may kill the worker
            # mid-call); what is known is recorded now, with or without the send journal.
            results.extend(cut.outcomes)
            struck = True
        except SoftTimeLimitExceeded:
            # Struck where this group's outcomes are unknown (dispatch turns the strikes it
            # foresees into OutOfTime): it stays claimed, and the sweeper settles it from the
            # send journal.
            struck = True
    outcomes.record({d.id: d for d in deliveries}, results)


def _still_eligible(deliveries: list[Delivery], now) -> list[Delivery]:
    """Skip what the recipient opted out of, or got suppressed for, since routing."""
    groups: dict[tuple[int, str], list[Delivery]] = defaultdict(list)
    keep: list[Delivery] = []
    for delivery in deliveries:
        if delivery.is_test:  # a staff member's own test send (admin): no preferences apply
            keep.append(delivery)
            continue
        groups[(delivery.notification.type_id, delivery.channel)].append(delivery)
    skipped: list[Delivery] = []
    for (_, channel), group in groups.items():
        ntype = group[0].notification.type
        recipients = {d.recipient for d in group}
        verdict = {d.recipient_id: d for d in decide(ntype, recipients, [channel], now)}
        for delivery in group:
            decision = verdict[delivery.recipient_id]
            if decision.skip_reason:
                delivery.status = Delivery.Status.SKIPPED
                delivery.skip_reason = decision.skip_reason
            elif decision.defer_until and decision.defer_until > now:
                # Quiet hours began since routing: park it until they end, not dropped.
                delivery.status = Delivery.Status.DEFERRED
                delivery.next_attempt_at = decision.defer_until
                delivery.attempts -= 1
            elif (
                decision.digest
                and delivery.digest_id is None
                and delivery.hop == 0
                and not delivery.possible_duplicate
            ):
                # Switched to a digest since routing: it goes in the digest instead (unless
                # an earlier attempt may have delivered it: a digest would repeat it).
                delivery.status = Delivery.Status.DIGESTED
            else:
                keep.append(delivery)
                continue
            delivery.status_changed_at = now
            skipped.append(delivery)
    if skipped:
        Delivery.objects.bulk_update(
            skipped, ["status", "skip_reason", "status_changed_at", "next_attempt_at", "attempts"]
        )
    return keep
