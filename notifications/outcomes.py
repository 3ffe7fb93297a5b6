"""Record what providers answered: sent, retry later, or fail and fall back.

- transient: retry with exponential backoff and full jitter (honouring Retry-After); short
  waits stay in the broker as a countdown, longer ones are parked in PostgreSQL
  (``deferred`` + ``next_attempt_at``) for the release task;
- ambiguous: the provider may have it, so the delivery is flagged ``possible_duplicate``
  and retried on the same provider only; a flagged delivery never falls back, however its
  later attempts end;
- permanent, or retries spent: failed, and the next hop of the chain is created;
- circuit open: the next hop this recipient may take is created at once; with none, the
  delivery waits for the breaker's next probe and spends no attempt.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from contextlib import nullcontext
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction

from channels.base import AMBIGUOUS, PERMANENT, Outcome
from preferences.eligibility import Decision, decide

from . import clock, enqueue
from .bulk import bulk_set
from .dispatch import BATCH_TIME_SPENT, CIRCUIT_OPEN, OUT_OF_TIME_NOT_SENT, RATE_LIMITED
from .fallback import onward_hops
from .journal import JOURNAL_LOST
from .models import Delivery

# (delivery id, traffic, channel) of short retries, by whole seconds of wait.
Soon = dict[int, list[tuple[int, str, str]]]

RECORDED_FIELDS = [
    "status",
    "status_changed_at",
    "sent_at",
    "provider_message_id",
    "template_version",
    "summary",
    "error_kind",
    "error_message",
    "next_attempt_at",
    "attempts",
    "possible_duplicate",
    "updated_at",
]


def backoff_seconds(attempts: int) -> float:
    ceiling = min(
        settings.RETRY_BACKOFF_CAP_SECONDS, settings.RETRY_BACKOFF_BASE_SECONDS * 2**attempts
    )
    return random.uniform(0, ceiling)


def record(deliveries: dict[int, Delivery], results: list[Outcome]) -> None:
    now = clock.now()
    soon: Soon = defaultdict(list)
    failed: list[Delivery] = []
    diverted: list[tuple[Delivery, Outcome]] = []
    changed: list[Delivery] = []
    for outcome in results:
        delivery = deliveries[outcome.delivery_id]
        delivery.status_changed_at = delivery.updated_at = now
        changed.append(delivery)
        if outcome.sent:
            delivery.status = Delivery.Status.SENT
            delivery.sent_at = now
            delivery.provider_message_id = outcome.provider_message_id[:255]
            delivery.error_kind = ""
            delivery.error_message = ""
            continue
        delivery.error_kind = outcome.error_kind
        delivery.error_message = outcome.error
        if outcome.error_kind == AMBIGUOUS:
            delivery.possible_duplicate = True
        if outcome.error.startswith(CIRCUIT_OPEN) and not delivery.possible_duplicate:
            # A backup provider or channel takes it at once, if one will for this recipient.
            # (The provider may have a flagged delivery: another would send it twice.)
            delivery.status = Delivery.Status.FAILED
            diverted.append((delivery, outcome))
        elif _should_retry(delivery, outcome):
            _retry_after(delivery, outcome, now, soon)
        else:
            delivery.status = Delivery.Status.FAILED
            failed.append(delivery)
    # All sent: one statement, atomic on its own, needs no transaction block.
    with transaction.atomic() if soon or failed or diverted else nullcontext():
        taken = []
        for delivery, outcome in diverted:
            hop = _next_eligible_hop(delivery, now, record_skips=False)
            if hop is not None:
                taken.append(hop)
            elif _should_retry(delivery, outcome):
                # No hop this recipient can take: it waits for the breaker's next probe like a
                # delivery with no backup at all, rather than being lost to the outage.
                _retry_after(delivery, outcome, now, soon)
        bulk_set(Delivery, changed, RECORDED_FIELDS)
        for wait, retries in soon.items():
            enqueue.sends_on_commit(retries, countdown=wait)
        enqueue.sends_on_commit((d.id, d.traffic, d.channel) for d in taken)
        fall_back(failed)


def _retry_after(delivery: Delivery, outcome: Outcome, now: datetime, soon: Soon) -> None:
    """Short waits stay in the broker as a countdown; longer ones are parked in PostgreSQL.

    Short ones are kept by their wait in whole seconds, rounded up (never sooner than asked):
    a batch that failed together (a provider's blip, a greylisting domain) is retried in a
    few batches, one per second of wait, instead of a task, a claim and a provider connection
    per delivery. Backoff's jitter still spreads the retries over the wait.
    """
    wait = outcome.retry_after if outcome.retry_after else backoff_seconds(delivery.attempts)
    if wait <= settings.RETRY_PARK_AFTER_SECONDS:
        delivery.status = Delivery.Status.PENDING
        soon[math.ceil(wait)].append((delivery.id, delivery.traffic, delivery.channel))
    else:
        delivery.status = Delivery.Status.DEFERRED
        delivery.next_attempt_at = now + timedelta(seconds=wait)


def _should_retry(delivery: Delivery, outcome: Outcome) -> bool:
    if outcome.error_kind == PERMANENT:
        return False
    never_tried = (CIRCUIT_OPEN, RATE_LIMITED, JOURNAL_LOST, OUT_OF_TIME_NOT_SENT, BATCH_TIME_SPENT)
    if outcome.error.startswith(never_tried):
        # Never tried: waiting for the breaker's next probe, for the provider's send rate, for
        # the send journal or for a batch or task with time left spends no attempt. With no
        # backup, failing it would lose it.
        delivery.attempts -= 1
        return True
    return delivery.attempts < settings.MAX_ATTEMPTS.get(delivery.channel, 5)


def fall_back(failed: list[Delivery]) -> list[Delivery]:
    """Create the next eligible hop for each failed delivery; returns the new pending ones.

    A delivery the provider may have (``possible_duplicate``) gets no hop.
    """
    now = clock.now()
    created: list[Delivery] = []
    for delivery in failed:
        if delivery.possible_duplicate:
            continue
        hop = _next_eligible_hop(delivery, now)
        if hop is not None:
            created.append(hop)
    enqueue.sends_on_commit((d.id, d.traffic, d.channel) for d in created)
    return created


def _next_eligible_hop(
    delivery: Delivery, now: datetime, *, record_skips: bool = True
) -> Delivery | None:
    """Save the first hop this recipient may take, after the ineligible ones it passes.

    Ineligible hops are saved as skipped (support can read why); with ``record_skips``
    false, only when an eligible hop follows them, so a delivery that waits instead keeps
    its chain unspent.
    """
    passed: list[Delivery] = []
    for channel, provider in onward_hops(delivery):
        row = Delivery(
            notification=delivery.notification,
            recipient=delivery.recipient,
            channel=channel,
            provider=provider,
            traffic=delivery.traffic,
            is_test=delivery.is_test,
            status_changed_at=now,
        )
        # A staff member's own test send: no preferences apply.
        reason = None if delivery.is_test else _decide(delivery, channel, now)
        if reason is None or reason.allowed:
            _save_chain(delivery, [*passed, row])
            return row
        row.status = Delivery.Status.SKIPPED
        row.skip_reason = reason.skip_reason
        passed.append(row)
    if record_skips:
        _save_chain(delivery, passed)
    return None


def _decide(delivery: Delivery, channel: str, now: datetime) -> Decision:
    return decide(delivery.notification.type, [delivery.recipient], [channel], now)[0]


def _save_chain(delivery: Delivery, rows: list[Delivery]) -> None:
    previous = delivery
    for row in rows:
        row.replaces, row.hop = previous, previous.hop + 1
        row.save()
        previous = row
