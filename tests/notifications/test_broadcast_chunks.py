"""A broadcast fans out a chunk per transaction: each commits with its cursor and its sends,
a task hands the rest on when its time is up, and a chunk that fails loses only itself."""

from __future__ import annotations

import psycopg
import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.db import OperationalError, connection
from django.test import TestCase

from notifications import broadcasts, enqueue, fanout, routing
from notifications.models import Delivery, Notification, Recipient
from tests.factories import notification_type_with_templates

pytestmark = pytest.mark.django_db


@pytest.fixture
def chunked(settings):
    """Chunks of 10 recipients in batches of 4 (whole batches: 12 a chunk), 2 channels."""
    settings.BROADCAST_CHUNK_SIZE = 10
    settings.BROADCAST_BATCH_SIZE = 4
    settings.BROADCAST_TASK_SECONDS = 3600
    return notification_type_with_templates(
        key="weekly-deals", channels=("email", "in_app"), traffic="marketing"
    )


@pytest.fixture
def published(monkeypatch):
    """Send tasks and routing tasks published, instead of reaching the broker."""
    calls = {"sends": [], "routes": []}
    monkeypatch.setattr(
        enqueue,
        "publish_send",
        lambda ids, traffic, channel, countdown=0: calls["sends"].extend(ids),
    )
    monkeypatch.setattr(
        enqueue, "publish_route", lambda ids, traffic: calls["routes"].append(list(ids))
    )
    return calls


def people(count: int, prefix: str = "p") -> list[Recipient]:
    return Recipient.objects.bulk_create(
        Recipient(external_id=f"{prefix}{i}", email=f"{prefix}{i}@example.com")
        for i in range(count)
    )


def accept_broadcast() -> Notification:
    with TestCase.captureOnCommitCallbacks(execute=False):
        accepted = broadcasts.broadcast_accept(
            api_key_id="k", type_key="weekly-deals", audience={"all": True}, data={}
        )
    return accepted.notification


def route(*notifications: Notification) -> int:
    with TestCase.captureOnCommitCallbacks(execute=True):
        return routing.route_notifications([str(n.id) for n in notifications])


def test_a_task_writes_every_chunk_and_publishes_each_delivery_once(chunked, published):
    everyone = people(30)
    notification = accept_broadcast()

    assert route(notification) == 60

    notification.refresh_from_db()
    rows = Delivery.objects.filter(notification=notification)
    assert (notification.status, notification.fanout_cursor) == ("routed", everyone[-1].id)
    assert sorted(published["sends"]) == sorted(rows.values_list("id", flat=True))
    assert rows.values("recipient", "channel").distinct().count() == 60
    assert published["routes"] == []


def test_a_task_out_of_time_commits_its_chunk_and_hands_the_rest_on(chunked, settings, published):
    settings.BROADCAST_TASK_SECONDS = 0
    everyone = people(30)
    notification = accept_broadcast()

    assert route(notification) == 24  # one chunk: three batches of 4 recipients, 2 channels

    notification.refresh_from_db()
    assert (notification.status, notification.fanout_cursor) == ("accepted", everyone[11].id)
    assert published["routes"] == [[str(notification.id)]]
    assert len(published["sends"]) == 24
    assert route(notification) + route(notification) == 36
    notification.refresh_from_db()
    assert notification.status == "routed"
    assert route(notification) == 0
    per_person = Delivery.objects.filter(notification=notification, channel="email")
    assert sorted(per_person.values_list("recipient_id", flat=True)) == [p.id for p in everyone]
    assert sorted(published["sends"]) == sorted(
        Delivery.objects.filter(notification=notification).values_list("id", flat=True)
    )


def test_an_audience_that_ends_on_a_full_chunk_is_routed_in_that_chunk(
    chunked, settings, published
):
    settings.BROADCAST_TASK_SECONDS = 0
    people(12)
    notification = accept_broadcast()

    assert route(notification) == 24

    notification.refresh_from_db()
    assert notification.status == "routed"


def test_a_recipient_created_mid_fan_out_past_the_cursor_is_in_it(chunked, settings, published):
    settings.BROADCAST_TASK_SECONDS = 0
    people(20)
    notification = accept_broadcast()
    route(notification)
    late = people(1, prefix="late")[0]

    route(notification)

    assert Delivery.objects.filter(notification=notification, recipient=late).count() == 2


@pytest.mark.parametrize("interruption", [OperationalError("gone"), SoftTimeLimitExceeded()])
def test_a_chunk_cut_short_loses_only_itself_and_the_next_task_writes_it(
    chunked, published, monkeypatch, interruption
):
    everyone = people(30)
    notification = accept_broadcast()
    real_copy = fanout.copy_deliveries
    copies = []

    def copy_then_fail(rows):
        copies.append(1)
        if len(copies) == 5:  # the second batch of the second chunk
            raise interruption
        return real_copy(rows)

    monkeypatch.setattr(fanout, "copy_deliveries", copy_then_fail)

    with pytest.raises(type(interruption)):
        route(notification)

    notification.refresh_from_db()
    assert (notification.status, notification.fanout_cursor) == ("accepted", everyone[11].id)
    assert Delivery.objects.filter(notification=notification).count() == 24
    route(notification)
    notification.refresh_from_db()
    assert notification.status == "routed"
    pairs = list(Delivery.objects.filter(notification=notification).values_list("recipient_id"))
    assert len(pairs) == 60 and len(set(pairs)) == 30


def test_a_chunk_that_cannot_be_written_fails_the_broadcast_and_keeps_what_went_before(
    chunked, published, monkeypatch
):
    twelfth = people(30)[11].id
    notification = accept_broadcast()
    real_delivery = fanout._delivery

    def past_the_first_chunk_broken(notification, decision, provider, now):
        if decision.recipient_id > twelfth:
            raise ValueError("a row that cannot be built")
        return real_delivery(notification, decision, provider, now)

    monkeypatch.setattr(fanout, "_delivery", past_the_first_chunk_broken)

    route(notification)

    notification.refresh_from_db()
    assert (notification.status, notification.fanout_cursor) == ("failed", twelfth)
    assert Delivery.objects.filter(notification=notification).count() == 24
    assert len(published["sends"]) == 24


def test_one_deadline_serves_the_whole_task_and_hands_on_what_it_did_not_reach(
    chunked, settings, published
):
    settings.BROADCAST_TASK_SECONDS = 0
    people(30)
    first, second = accept_broadcast(), accept_broadcast()

    assert route(first, second) == 24

    assert published["routes"] == [[str(first.id), str(second.id)]]
    assert not Delivery.objects.filter(notification=second).exists()


def test_a_broadcast_finished_past_the_deadline_hands_on_the_next(chunked, settings, published):
    settings.BROADCAST_TASK_SECONDS = 0
    people(5)
    first, second = accept_broadcast(), accept_broadcast()

    assert route(first, second) == 10

    first.refresh_from_db()
    assert first.status == "routed"
    assert published["routes"] == [[str(second.id)]]


@pytest.mark.django_db(transaction=True)  # the other session must see the broadcast
def test_a_key_share_lock_on_the_broadcast_does_not_stop_its_fan_out(chunked, published):
    people(5)
    broadcast = accept_broadcast()
    # What a send worker committing a fallback hop of this broadcast holds: its FK check.
    other = psycopg.connect(**_libpq(connection.settings_dict))
    try:
        other.execute(
            "SELECT 1 FROM notifications_notification WHERE id = %s FOR KEY SHARE",
            [broadcast.id],
        )
        assert routing.route_notifications([str(broadcast.id)]) == 10
    finally:
        other.close()
    broadcast.refresh_from_db()
    assert broadcast.status == "routed"


def _libpq(db: dict) -> dict:
    return {
        "dbname": db["NAME"],
        "user": db["USER"],
        "host": db["HOST"],
        "port": db["PORT"] or 5432,
        "autocommit": False,
    }
