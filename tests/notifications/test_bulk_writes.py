"""The one-statement writes of notifications/bulk.py, on PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.db import DataError, connection
from django.utils import timezone

from notifications.bulk import bulk_set, insert_new, upsert_statement
from notifications.models import Delivery, Notification, Recipient
from tests.factories import NotificationTypeFactory, RecipientFactory

pytestmark = pytest.mark.django_db


def upsert(*args) -> None:
    with connection.cursor() as cursor:
        cursor.execute(*upsert_statement(*args))


def test_upsert_creates_new_rows_and_overwrites_only_the_named_fields():
    old = RecipientFactory(external_id="7", email="old@example.com", phone="+15550000007")
    stamp = old.updated_at

    upsert(
        Recipient,
        [Recipient(external_id="7", email="new@example.com"), Recipient(external_id="8")],
        "external_id",
        ["email", "updated_at"],
    )

    updated = Recipient.objects.get(external_id="7")
    assert (updated.email, updated.phone) == ("new@example.com", "+15550000007")
    assert updated.updated_at > stamp and updated.id == old.id
    created = Recipient.objects.get(external_id="8")
    assert (created.locale, created.timezone, created.tags) == ("en", "UTC", [])


def test_upsert_with_nothing_to_update_keeps_existing_rows():
    RecipientFactory(external_id="7", email="kept@example.com")

    upsert(Recipient, [Recipient(external_id="7", email="ignored@example.com")], "external_id", [])

    assert Recipient.objects.get(external_id="7").email == "kept@example.com"


def test_insert_new_answers_the_keys_that_went_in_and_skips_conflicts():
    ntype = NotificationTypeFactory()
    first = Notification(id=uuid.uuid4(), type=ntype, api_key_id="k", idempotency_key="a")
    assert insert_new(Notification, [first]) == {first.id}

    replay = Notification(id=uuid.uuid4(), type=ntype, api_key_id="k", idempotency_key="a")
    fresh = Notification(id=uuid.uuid4(), type=ntype, api_key_id="k", idempotency_key="b")

    assert insert_new(Notification, [replay, fresh]) == {fresh.id}
    assert set(Notification.objects.values_list("idempotency_key", flat=True)) == {"a", "b"}


def test_insert_new_runs_its_first_statements_in_the_same_step():
    ntype = NotificationTypeFactory()
    notification = Notification(id=uuid.uuid4(), type=ntype, api_key_id="k")
    recipient = upsert_statement(Recipient, [Recipient(external_id="9")], "external_id", [])

    assert insert_new(Notification, [notification], first=[recipient]) == {notification.id}
    assert Recipient.objects.filter(external_id="9").exists()


@pytest.mark.django_db(transaction=True)  # autocommit, as in a request
def test_a_failing_insert_leaves_its_first_statements_undone():
    ntype = NotificationTypeFactory()
    # An idempotency key over its column's length fails the insert after the upsert.
    bad = Notification(id=uuid.uuid4(), type=ntype, api_key_id="k", idempotency_key="x" * 300)
    recipient = upsert_statement(Recipient, [Recipient(external_id="9")], "external_id", [])

    with pytest.raises(DataError):
        insert_new(Notification, [bad], first=[recipient])

    assert not Recipient.objects.filter(external_id="9").exists()


AWKWARD = ['a "quoted", {braced} \\ value', "NULL", "", "ünïcödé ✓"]


def test_many_rows_keep_every_value_through_the_one_array_per_column_write():
    ntype = NotificationTypeFactory()
    rows = [
        Notification(
            id=uuid.uuid4(),
            type=ntype,
            api_key_id=text,
            idempotency_key=None if i % 2 else f"key-{i}",
            data={"text": text, "list": [1, None, {"x": text}]},
            recipient_ids=[text],
        )
        for i, text in enumerate(AWKWARD)
    ]

    assert insert_new(Notification, rows) == {row.id for row in rows}

    stored = {n.id: n for n in Notification.objects.all()}
    for row in rows:
        found = stored[row.id]
        assert (found.api_key_id, found.idempotency_key) == (row.api_key_id, row.idempotency_key)
        assert (found.data, found.recipient_ids) == (row.data, row.recipient_ids)


@pytest.mark.parametrize("count", [1, len(AWKWARD)], ids=["one row", "many rows"])
def test_bulk_set_writes_each_row_its_own_values_nulls_included(count):
    notification = Notification.objects.create(type=NotificationTypeFactory(), recipient_ids=[])
    earlier = timezone.now() + timedelta(minutes=1)
    deliveries = [
        Delivery.objects.create(
            notification=notification,
            recipient=RecipientFactory(),
            channel="email",
            next_attempt_at=earlier,
        )
        for _ in range(count + 1)
    ]
    *changed, bystander = deliveries
    soon = earlier + timedelta(minutes=5)
    for i, (delivery, text) in enumerate(zip(changed, AWKWARD, strict=False)):
        delivery.error_message = text
        delivery.attempts = i + 1
        delivery.summary = text[::-1]
        # A new time over the old one (the only row, when there is one), or none over it.
        delivery.next_attempt_at = None if i % 2 else soon
        bystander.error_message, bystander.attempts = "not written", 9

    bulk_set(Delivery, changed, ["error_message", "attempts", "summary", "next_attempt_at"])

    for delivery in changed:
        found = Delivery.objects.get(id=delivery.id)
        assert (found.error_message, found.attempts, found.summary, found.next_attempt_at) == (
            delivery.error_message,
            delivery.attempts,
            delivery.summary,
            delivery.next_attempt_at,
        )
    found = Delivery.objects.get(id=bystander.id)
    assert (found.error_message, found.attempts, found.next_attempt_at) == ("", 0, earlier)
