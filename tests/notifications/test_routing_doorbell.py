"""The routing doorbell: one waiting routing task per traffic class, however many events."""

from __future__ import annotations

import json

import pytest
from django.core.cache import cache
from django.db import connection, transaction
from django.test import TestCase

from config.celery import app as celery_app
from config.celery import route_queue
from notifications import broadcasts, doorbell, routing, services
from notifications.models import Notification
from tests.factories import notification_type_with_templates

pytestmark = pytest.mark.django_db


@pytest.fixture
def broker():
    """Publish to the real broker (no worker runs); yields the queued tasks of a queue."""
    celery_app.conf.task_always_eager = False
    with celery_app.connection_for_write() as conn:
        client = conn.default_channel.client
        for traffic in ("transactional", "marketing"):
            client.delete(route_queue(traffic))

        def queued(traffic: str) -> list[tuple[str, list]]:
            messages = [json.loads(m) for m in client.lrange(route_queue(traffic), 0, -1)]
            return [(m["headers"]["task"], m["headers"]["argsrepr"]) for m in messages]

        yield queued
        for traffic in ("transactional", "marketing"):
            client.delete(route_queue(traffic))
    celery_app.conf.task_always_eager = True


def accept(count: int, prefix: str = "r", type_key: str = "receipt") -> list[Notification]:
    with TestCase.captureOnCommitCallbacks(execute=True):
        return [
            services.notification_accept(
                api_key_id="k",
                event=services.EventRequest(
                    type_key=type_key,
                    recipients=[{"external_id": f"{prefix}{i}", "email": f"{prefix}{i}@x.org"}],
                    data={"order_id": str(i)},
                ),
            ).notification
            for i in range(count)
        ]


def statuses() -> dict[str, int]:
    found: dict[str, int] = {}
    for status in Notification.objects.values_list("status", flat=True):
        found[status] = found.get(status, 0) + 1
    return found


def test_events_accepted_while_a_routing_task_waits_publish_no_other(broker):
    notification_type_with_templates(key="receipt")

    accept(5)

    assert broker("transactional") == [("clarion.route_waiting", "['transactional']")]
    assert statuses() == {"accepted": 5}


def test_the_task_routes_everything_waiting_and_the_next_event_rings_again(broker):
    notification_type_with_templates(key="receipt")
    accept(5)

    with TestCase.captureOnCommitCallbacks(execute=True):
        assert routing.route_waiting("transactional") == 5

    assert statuses() == {"routed": 5}
    accept(1, prefix="late")
    assert len(broker("transactional")) == 2  # answered: the next event rang again


def test_a_full_batch_rings_again_and_every_event_is_routed(settings):
    settings.ROUTE_BATCH_SIZE = 2
    notification_type_with_templates(key="receipt")

    accept(5)  # tasks run inline: each full batch rang for the next

    assert statuses() == {"routed": 5}


def test_each_traffic_class_has_its_own_doorbell(broker):
    notification_type_with_templates(key="receipt")
    notification_type_with_templates(key="deals", traffic="marketing")

    accept(2)
    accept(2, prefix="m", type_key="deals")

    assert broker("transactional") == [("clarion.route_waiting", "['transactional']")]
    assert broker("marketing") == [("clarion.route_waiting", "['marketing']")]
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert routing.route_waiting("marketing") == 2
    assert statuses() == {"accepted": 2, "routed": 2}


def test_a_broadcast_gets_a_routing_task_of_its_own(broker):
    notification_type_with_templates(key="deals", traffic="marketing")

    with TestCase.captureOnCommitCallbacks(execute=True):
        accepted = broadcasts.broadcast_accept(
            api_key_id="k", type_key="deals", audience={"all": True}, data={"order_id": "1"}
        )

    assert broker("marketing") == [
        ("clarion.route_notifications", repr([[str(accepted.notification.id)]]))
    ]
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert routing.route_waiting("marketing") == 0  # the doorbell leaves broadcasts alone


def test_a_failed_publish_leaves_the_doorbell_for_the_next_event(broker, monkeypatch):
    notification_type_with_templates(key="receipt")

    def broker_down(traffic):
        raise ConnectionError("broker down")

    monkeypatch.setattr("notifications.enqueue.publish_route_waiting", broker_down)
    accept(1)  # robust: logged, the event is kept for the sweeper
    assert cache.get("clarion:route-doorbell:transactional") is None
    monkeypatch.undo()
    celery_app.conf.task_always_eager = False

    assert doorbell.ring("transactional") is True
    assert broker("transactional") == [("clarion.route_waiting", "['transactional']")]


def test_an_event_keeps_the_traffic_class_its_type_had_when_it_was_accepted():
    notification_type_with_templates(key="receipt")
    deals = notification_type_with_templates(key="deals", traffic="marketing")

    [receipt] = accept(1)
    [offer] = accept(1, prefix="m", type_key="deals")
    made = Notification.objects.create(type=deals, recipient_ids=[])  # e.g. the admin's

    assert Notification.objects.get(id=receipt.id).traffic == "transactional"
    assert Notification.objects.get(id=offer.id).traffic == "marketing"
    assert Notification.objects.get(id=made.id).traffic == "marketing"


@pytest.mark.django_db(transaction=True)
def test_routing_reads_what_waits_in_order_through_its_own_index():
    """Never a bitmap scan: it would visit every routed event's dead entry again each call.

    A fresh table has no statistics, as on a new install or with autovacuum behind; joining
    the type table for the traffic class made the planner pick a bitmap scan there.
    """
    notification_type_with_templates(key="receipt")
    accept(3)
    waiting = routing.claimable(routing.waiting("transactional"), limit=100)
    with transaction.atomic(), connection.cursor() as cursor:
        sql, params = waiting.query.sql_with_params()
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())

    assert "Index Scan using notification_waiting" in plan
    assert "Bitmap" not in plan and "Sort" not in plan


def test_an_event_that_cannot_be_routed_fails_alone_and_the_rest_are_routed(settings):
    notification_type_with_templates(key="receipt", channels=("email",))
    broken = notification_type_with_templates(key="broken", channels=("email",))
    # Saved past the admin's checks (by a script, say): no provider serves "fax".
    type(broken).objects.filter(id=broken.id).update(channels=["email", "fax"])

    def event(type_key: str, who: str) -> Notification:
        request = services.EventRequest(
            type_key=type_key,
            recipients=[{"external_id": who, "email": f"{who}@x.org"}],
            data={"order_id": who},
        )
        return services.notification_accept(api_key_id="k", event=request).notification

    with TestCase.captureOnCommitCallbacks(execute=False):  # accepted, not routed yet
        first, poison, last = event("receipt", "a"), event("broken", "p"), event("receipt", "b")

    with TestCase.captureOnCommitCallbacks(execute=True):
        routing.route_waiting("transactional")

    statuses = dict(Notification.objects.values_list("id", "status"))
    assert [statuses[n.id] for n in (first, poison, last)] == ["routed", "failed", "routed"]
    assert not poison.deliveries.exists() and first.deliveries.get().status == "sent"
