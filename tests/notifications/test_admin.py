"""The delivery log in the admin: filters, search, inline deliveries, skip reasons."""

from __future__ import annotations

import pytest

from notifications.models import Delivery
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
