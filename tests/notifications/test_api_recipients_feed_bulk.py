"""Recipients upsert, the in-app feed, and the bulk endpoint."""

from __future__ import annotations

import pytest

from notifications.models import FeedItem, Notification, Recipient
from tests.factories import RecipientFactory, notification_type_with_templates

pytestmark = pytest.mark.django_db


def test_put_creates_then_updates_only_given_fields(api):
    created = api.put(
        "/api/v1/recipients/u1/",
        {"email": "u1@example.com", "phone": "+15550001111", "locale": "fr-CA"},
        format="json",
    )
    assert created.status_code == 201
    updated = api.put("/api/v1/recipients/u1/", {"timezone": "Europe/Paris"}, format="json")
    assert updated.status_code == 200
    recipient = Recipient.objects.get(external_id="u1")
    assert (recipient.email, recipient.locale, recipient.timezone) == (
        "u1@example.com",
        "fr-CA",
        "Europe/Paris",
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "nope"}, "email"),
        ({"phone": "12"}, "phone"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"tags": "vip"}, "tags"),
        ({"attributes": [1]}, "attributes"),
    ],
)
def test_put_with_a_bad_field_says_which_and_stores_nothing(api, body, field):
    response = api.put("/api/v1/recipients/u2/", body, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert not Recipient.objects.filter(external_id="u2").exists()


def test_feed_lists_items_with_unread_count_and_marks_read(api):
    recipient = RecipientFactory(external_id="f1")
    first = FeedItem.objects.create(recipient=recipient, title="One")
    FeedItem.objects.create(recipient=recipient, title="Two")
    feed = api.get("/api/v1/recipients/f1/feed/").json()
    assert feed["unread_count"] == 2
    assert [i["title"] for i in feed["items"]] == ["Two", "One"]
    read = api.post(f"/api/v1/recipients/f1/feed/{first.id}/read/")
    assert read.status_code == 200 and read.json()["read"] is True
    assert api.get("/api/v1/recipients/f1/feed/").json()["unread_count"] == 1
    unread = api.get("/api/v1/recipients/f1/feed/?unread=true").json()["items"]
    assert [i["title"] for i in unread] == ["Two"]


def test_feed_item_of_someone_else_is_404(api):
    RecipientFactory(external_id="a")
    other = RecipientFactory(external_id="b")
    item = FeedItem.objects.create(recipient=other, title="Private")
    assert api.post(f"/api/v1/recipients/a/feed/{item.id}/read/").status_code == 404
    item.refresh_from_db()
    assert item.read_at is None


def test_bulk_accepts_valid_items_and_reports_each_bad_one(api):
    notification_type_with_templates(key="order-shipped", channels=("email",))
    RecipientFactory(external_id="42")
    items = [
        {"type": "order-shipped", "recipients": ["42"], "data": {"order_id": i}} for i in range(3)
    ]
    items.insert(1, {"type": "nope", "recipients": ["42"]})
    items.append({"type": "order-shipped"})
    response = api.post("/api/v1/notifications/bulk/", {"notifications": items}, format="json")
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["status"] for r in results] == [202, 400, 202, 202, 400]
    assert results[1]["error"]["code"] == "unknown_notification_type"
    assert results[4]["error"]["code"] == "validation_error"
    assert Notification.objects.count() == 3


def test_bulk_replay_with_keys_creates_nothing_new(api):
    notification_type_with_templates(key="order-shipped", channels=("email",))
    RecipientFactory(external_id="42")
    items = [
        {"type": "order-shipped", "recipients": ["42"], "idempotency_key": f"b-{i}"}
        for i in range(5)
    ]
    first = api.post("/api/v1/notifications/bulk/", {"notifications": items}, format="json")
    again = api.post("/api/v1/notifications/bulk/", {"notifications": items}, format="json")
    assert [r["id"] for r in first.json()["results"]] == [r["id"] for r in again.json()["results"]]
    assert [r["created"] for r in again.json()["results"]] == [False] * 5
    assert Notification.objects.count() == 5


def test_bulk_with_too_many_items_is_refused(api, settings):
    response = api.post(
        "/api/v1/notifications/bulk/",
        {"notifications": [{"type": "x", "recipients": ["1"]}] * 1001},
        format="json",
    )
    assert response.status_code == 400
    assert "notifications" in response.json()["error"]["fields"]
