"""Publishing work to the broker, only after the transaction that made it commits.

Publishing is best effort: ``robust`` on_commit callbacks log and carry on when the broker
is down, and the publish retry policy is short, so an API request still answers at once.
Nothing is lost: PostgreSQL holds the work, and the sweeper enqueues it again.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator

from django.conf import settings
from django.db import transaction

from config.celery import route_queue, send_queue

from . import doorbell
from .models import Delivery, Traffic

log = logging.getLogger(__name__)


def _chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def wake_routing_on_commit(notifications: Iterable) -> None:
    """After commit, ring the routing doorbell for events; a broadcast gets a task of its own."""
    broadcasts = []
    traffics: set[str] = set()
    for notification in notifications:
        if notification.is_broadcast:
            broadcasts.append(notification)
        else:
            traffics.add(notification.traffic)
    for traffic in sorted(traffics):
        transaction.on_commit(lambda t=traffic: doorbell.ring(t), robust=True)
    route_on_commit(broadcasts)


def route_on_commit(notifications: Iterable) -> None:
    """After commit, a routing task per chunk of these notifications' ids."""
    by_traffic: dict[str, list[str]] = defaultdict(list)
    for notification in notifications:
        by_traffic[notification.traffic].append(str(notification.id))
    for traffic, ids in by_traffic.items():
        for chunk in _chunks(ids, settings.ROUTE_BATCH_SIZE):
            transaction.on_commit(lambda c=chunk, t=traffic: publish_route(c, t), robust=True)


def publish_route(notification_ids: list[str], traffic: str) -> None:
    from .tasks import route_notifications

    route_notifications.apply_async(
        args=[notification_ids], queue=route_queue(traffic), retry_policy=_retry_policy()
    )


def publish_route_waiting(traffic: str) -> None:
    from .tasks import route_waiting

    route_waiting.apply_async(
        args=[traffic], queue=route_queue(traffic), retry_policy=_retry_policy()
    )


def sends_on_commit(deliveries: Iterable[tuple[int, str, str]], countdown: float = 0) -> None:
    """Enqueue (delivery id, traffic, channel) triples as batched send tasks after commit."""
    for ids, traffic, channel in _send_batches(sorted(deliveries)):
        transaction.on_commit(
            lambda c=ids, t=traffic, ch=channel: publish_send(c, t, ch, countdown), robust=True
        )


def publish_pending_sends(
    notification_ids: list, between: tuple[int, int] | None = None, page: int = 5000
) -> None:
    """Publish a send task per batch of the notifications' pending deliveries, in id order.

    Called after commit; ``between`` (after, through) narrows it to the delivery ids one
    fan-out chunk wrote. If the broker fails part way, the sweeper enqueues what is still
    pending.
    """
    for ids, traffic, channel in _send_batches(_pending(notification_ids, between, page)):
        publish_send(ids, traffic, channel)


def _pending(
    notification_ids: list, between: tuple[int, int] | None, page: int
) -> Iterator[tuple[int, str, str]]:
    # One query streamed through a server-side cursor (memory stays flat): paged with LIMIT,
    # a plan made before ANALYZE has seen a new broadcast scanned its every row per page.
    pending = Delivery.objects.filter(
        notification_id__in=notification_ids, status=Delivery.Status.PENDING
    )
    if between:
        pending = pending.filter(id__gt=between[0], id__lte=between[1])
    yield from pending.order_by("id").values_list("id", "traffic", "channel").iterator(page)


def send_batch_size(traffic: str) -> int:
    """Deliveries per send task of a traffic class.

    Each batch costs a few milliseconds whatever its size (the claim, the eligibility check,
    the records, the commits), so marketing, sent by the thousand, takes larger batches;
    transactional keeps small ones, each a short task that never holds a receipt back long.
    """
    if traffic == Traffic.MARKETING:
        return settings.MARKETING_SEND_BATCH_SIZE
    return settings.SEND_BATCH_SIZE


def _send_batches(
    deliveries: Iterable[tuple[int, str, str]],
) -> Iterator[tuple[list[int], str, str]]:
    """(ids, traffic, channel) batches of at most ``send_batch_size``, one queue each, as rows
    come."""
    batches: dict[tuple[str, str], list[int]] = defaultdict(list)
    for delivery_id, traffic, channel in deliveries:
        batch = batches[(traffic, channel)]
        batch.append(delivery_id)
        if len(batch) == send_batch_size(traffic):
            yield batch, traffic, channel
            batches[(traffic, channel)] = []
    for (traffic, channel), batch in batches.items():
        if batch:
            yield batch, traffic, channel


def publish_send(delivery_ids: list[int], traffic: str, channel: str, countdown: float = 0) -> None:
    from .tasks import send_deliveries

    send_deliveries.apply_async(
        args=[delivery_ids],
        queue=send_queue(traffic, channel),
        countdown=countdown or None,
        retry_policy=_retry_policy(),
    )


def _retry_policy() -> dict:
    return settings.CELERY_TASK_PUBLISH_RETRY_POLICY
