"""Routing and sending one event costs the same number of queries for 10 or 1,000 people."""

from __future__ import annotations

import psycopg
import pytest
from django.db import connection, transaction
from django.test import TestCase
from django.test.utils import CaptureQueriesContext

from notifications import services
from notifications.models import Delivery, Recipient
from notifications.routing import route_notifications
from notifications.sending import claim
from templates_app import selection
from tests.factories import NotificationFactory, notification_type_with_templates

pytestmark = pytest.mark.django_db


def queries_to_route_and_send(ntype, size: int, settings) -> int:
    # One send batch whatever the audience, so the count compares the work per batch.
    settings.SEND_BATCH_SIZE = 2000
    # Both runs read the type and the template versions, as a cold process would.
    settings.TYPE_CACHE_SECONDS = settings.TEMPLATE_CACHE_SECONDS = 0
    selection._read.clear()
    selection._current.clear()
    people = [
        {"external_id": f"p{size}-{i}", "email": f"p{size}-{i}@example.com"} for i in range(size)
    ]
    services.recipients_upsert(people)
    event = services.EventRequest(
        type_key=ntype.key, recipients=[p["external_id"] for p in people], data={"order_id": 1}
    )
    with CaptureQueriesContext(connection) as captured:
        with TestCase.captureOnCommitCallbacks(execute=True):
            accepted = services.notification_accept(api_key_id="k", event=event)
    assert Delivery.objects.filter(notification=accepted.notification, status="sent").count() == (
        size * len(ntype.channels)
    )
    return len(captured)


def test_query_count_is_the_same_for_10_and_1000_recipients(settings):
    ntype = notification_type_with_templates(key="order-shipped", channels=("email", "in_app"))
    small = queries_to_route_and_send(ntype, 10, settings)
    large = queries_to_route_and_send(ntype, 1000, settings)
    assert small == large, f"{small} queries for 10 recipients, {large} for 1000"


def test_a_claimed_batch_reads_its_notification_once_and_never_its_recipient_list(settings):
    settings.SEND_TRANSACTIONAL_INLINE = False  # leave the deliveries pending, to be claimed
    ntype = notification_type_with_templates(key="order-shipped", channels=("email",))
    people = [{"external_id": f"p{i}", "email": f"p{i}@example.com"} for i in range(300)]
    services.recipients_upsert(people)
    event = services.EventRequest(
        type_key=ntype.key, recipients=[p["external_id"] for p in people], data={"order_id": 1}
    )
    with TestCase.captureOnCommitCallbacks(execute=False):
        accepted = services.notification_accept(api_key_id="k", event=event)
    with TestCase.captureOnCommitCallbacks(execute=False):
        route_notifications([str(accepted.notification.id)])
    ids = list(Delivery.objects.values_list("id", flat=True)[:100])

    with CaptureQueriesContext(connection) as captured:
        batch = claim(ids)

    assert len(batch) == 100 and {d.status for d in batch} == {"sending"}
    assert len({id(d.notification) for d in batch}) == 1
    assert batch[0].notification.type.key == "order-shipped"
    assert not any("recipient_ids" in q["sql"] for q in captured), "the recipient list was read"
    assert batch[0].recipient.email.endswith("@example.com")


@pytest.mark.django_db(transaction=True)  # tables no ANALYZE has seen, as right after a fan-out
def test_a_claim_finds_its_batch_by_id_alone_and_locks_only_what_it_claims():
    """With the status in its query, a planner that had not seen the pending rows read every
    one of them through the in-flight index to find a batch (~11 ms a batch of 100 among
    97,000, against ~0.1 ms by primary key). Rows of the batch that are no longer pending
    (a batch published twice) are left unlocked: the sweeper skips locked rows, and other
    writers wait on them."""
    notification = NotificationFactory(
        type=notification_type_with_templates(key="order-shipped", channels=("email",))
    )
    people = Recipient.objects.bulk_create(
        Recipient(external_id=f"p{i}", email=f"p{i}@example.com") for i in range(300)
    )
    Delivery.objects.bulk_create(
        Delivery(notification=notification, recipient=person, channel="email", provider="x")
        for person in people
    )
    ids = list(Delivery.objects.order_by("id").values_list("id", flat=True)[100:200])
    sent = ids[:10]
    Delivery.objects.filter(id__in=sent).update(status="sent")

    with transaction.atomic():  # the claim's locks held until this commits
        with CaptureQueriesContext(connection) as captured:
            batch = claim(ids)
        [lock] = [q["sql"] for q in captured if "FOR NO KEY UPDATE" in q["sql"]]
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN {lock}")
            plan = "\n".join(row[0] for row in cursor.fetchall())
        assert sorted(d.id for d in batch) == ids[10:]
        assert locked_elsewhere(sent, "FOR UPDATE") == []
        # Claimed rows stay open to a new row's foreign-key check (FOR NO KEY UPDATE).
        assert locked_elsewhere(ids, "FOR KEY SHARE") == []

    assert "delivery_in_flight" not in plan
    assert claim(ids) == [], "a delivery no longer pending was claimed again"


PROBES = {
    "FOR UPDATE": "SELECT id FROM notifications_delivery WHERE id = ANY(%s) FOR UPDATE SKIP LOCKED",
    "FOR KEY SHARE": (
        "SELECT id FROM notifications_delivery WHERE id = ANY(%s) FOR KEY SHARE SKIP LOCKED"
    ),
}


def locked_elsewhere(ids: list[int], lock: str) -> list[int]:
    """Which of these deliveries another connection cannot take with this lock."""
    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as other:
        free = other.execute(PROBES[lock], [ids]).fetchall()
    return sorted(set(ids) - {pk for (pk,) in free})
