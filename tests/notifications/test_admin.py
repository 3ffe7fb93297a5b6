"""The delivery log in the admin: filters, search, inline deliveries, skip reasons."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from notifications.models import Delivery, Recipient
from tests.factories import NotificationFactory, RecipientFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def logged(db):
    ada = RecipientFactory(external_id="ada", email="ada@example.com")
    bob = RecipientFactory(external_id="bob", email="bob@example.com")
    notification = NotificationFactory()
    Delivery.objects.create(
        notification=notification,
        recipient=ada,
        channel="email",
        traffic="marketing",
        status="sent",
    )
    Delivery.objects.create(
        notification=notification,
        recipient=bob,
        channel="email",
        traffic="marketing",
        status="skipped",
        skip_reason="opted_out_category",
    )
    return notification


def test_delivery_log_filters_by_status_and_searches_by_recipient(admin_client, logged):
    skipped = admin_client.get("/admin/notifications/delivery/?status__exact=skipped")
    assert skipped.status_code == 200
    assert "opted_out_category" in skipped.text
    assert "ada@example.com" not in skipped.text
    found = admin_client.get("/admin/notifications/delivery/?q=ada@example.com")
    assert found.context["cl"].result_count == 1
    for query in [
        "channel__exact=email",
        f"notification__type__id__exact={logged.type_id}",
        "created_at__gte=2000-01-01+00:00:00%2B00:00",
    ]:
        assert admin_client.get(f"/admin/notifications/delivery/?{query}").status_code == 200


def test_notification_page_shows_its_deliveries_inline(admin_client, logged):
    page = admin_client.get(f"/admin/notifications/notification/{logged.id}/change/")
    assert page.status_code == 200
    assert "opted_out_category" in page.text
    assert "Deliveries" in page.text


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("channels", '"email"', "non-empty list"),
        ("channels", '["fax"]', "unknown channel"),
        ("fallbacks", '{"sms": ["sms"]}', "may not repeat"),
        ("sample_data", "[1, 2]", "must be an object"),
    ],
)
def test_a_type_saved_in_the_admin_is_checked_as_the_catalog_checks_it(
    admin_client, field, value, says
):
    from notifications.models import Category, NotificationType

    category = Category.objects.create(key="orders", name="Orders")
    form = {
        "key": "order-shipped",
        "name": "Order shipped",
        "category": category.pk,
        "traffic": "transactional",
        "channels": '["email", "sms"]',
        "fallbacks": "{}",
        "sample_data": "{}",
        "is_active": "on",
        field: value,
    }
    page = admin_client.post("/admin/notifications/notificationtype/add/", form)
    assert page.status_code == 200 and says in page.text
    assert not NotificationType.objects.exists()


def _deliveries(notification, count: int) -> None:
    for i in range(count):
        Delivery.objects.create(
            notification=notification,
            recipient=RecipientFactory(external_id=f"n{notification.pk}-{i}"),
            channel="email",
            traffic="transactional",
            status="sent",
        )


def test_a_notification_page_costs_the_same_queries_for_2_or_20_deliveries(admin_client):
    counts = []
    for size in (2, 20):
        notification = NotificationFactory()
        _deliveries(notification, size)
        url = f"/admin/notifications/notification/{notification.pk}/change/"
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(url).status_code == 200
        counts.append(len(captured))
    assert counts[0] == counts[1], counts


def test_a_broadcast_page_counts_its_deliveries_and_links_to_them(admin_client):
    broadcast = NotificationFactory(audience={"all": True})
    _deliveries(broadcast, 3)
    other = NotificationFactory()
    _deliveries(other, 1)

    page = admin_client.get(f"/admin/notifications/notification/{broadcast.pk}/change/").text
    assert "3 in all: 3 sent" in page
    assert "n" + str(broadcast.pk) + "-0" not in page  # no row per delivery

    log = admin_client.get(f"/admin/notifications/delivery/?notification__id__exact={broadcast.pk}")
    assert log.status_code == 200 and "3 deliveries" in log.text


def test_recipients_leave_through_erase_not_delete(admin_client):
    recipient = RecipientFactory(external_id="gone")
    page = admin_client.get(f"/admin/notifications/recipient/{recipient.pk}/delete/")
    assert page.status_code == 403
    assert Recipient.objects.filter(pk=recipient.pk).exists()


def test_a_category_people_made_choices_about_cannot_be_deleted(admin_client):
    from notifications.models import Category
    from preferences.models import Preference

    category = Category.objects.create(key="promotions", name="Promotions")
    Preference.objects.create(recipient=RecipientFactory(), category=category, enabled=False)
    page = admin_client.post(
        f"/admin/notifications/category/{category.pk}/delete/", {"post": "yes"}
    )
    assert "protected" in page.text.lower()
    assert Category.objects.filter(pk=category.pk).exists() and Preference.objects.exists()
