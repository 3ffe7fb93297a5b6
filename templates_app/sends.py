"""Send a template to the staff member trying it, through the normal send path, as a test."""

from __future__ import annotations

from django.db import transaction

from channels.registry import primary_provider
from notifications.models import Delivery, Notification, Recipient
from notifications.sending import send_deliveries
from preferences.addresses import address_error, normalize

from .models import Template


class TestSendError(ValueError):
    """A test send that cannot be made (no address, channel without a test target)."""

    __test__ = False  # not a pytest class


def staff_recipient(user, *, locale: str, phone: str = "") -> Recipient:
    """The recipient standing for a staff member in test sends (never a real customer)."""
    external_id = f"staff-test-{user.pk}"
    existing = Recipient.objects.filter(external_id=external_id).first()
    if existing is not None and not _is_test_recipient(existing):
        # The API takes any external id, so a customer may hold this one: updating it would
        # overwrite their address and locale with the staff member's.
        raise TestSendError(
            f"the recipient {external_id} is a real one made through the API, not your test "
            "recipient: it was left unchanged and nothing was sent"
        )
    recipient, _ = Recipient.objects.update_or_create(
        external_id=external_id,
        defaults={"email": user.email, "phone": phone, "locale": locale},
    )
    return recipient


def _is_test_recipient(recipient: Recipient) -> bool:
    # send_test makes its recipient and a test delivery in one transaction, so a row of ours
    # has test deliveries only, and at least one. One with none was made through the API.
    tests = set(recipient.deliveries.values_list("is_test", flat=True).distinct())
    return tests == {True}


def send_test(template: Template, *, user, phone: str = "") -> Delivery:
    """Render the template's current version with its sample data and send it to ``user``.

    Email goes to the staff member's own address; SMS to the number they give (Django users
    have no phone field); in-app to their own feed. Recorded as a Delivery with is_test.
    """
    channel = template.channel
    if template.current_version_id is None:
        raise TestSendError("this template has no version yet")
    if channel == "email" and not user.email:
        raise TestSendError("your staff account has no email address")
    if channel == "sms" and address_error(channel, phone):
        raise TestSendError("give your own phone number for an SMS test, e.g. +15551234567")
    if channel == "webhook":
        raise TestSendError("webhook templates have no test send; use the preview")
    ntype = template.notification_type
    with transaction.atomic():
        recipient = staff_recipient(user, locale=template.locale, phone=normalize("sms", phone))
        notification = Notification.objects.create(
            type=ntype,
            api_key_id=f"admin-test:{user.get_username()}"[:150],
            data=dict(ntype.sample_data or {}),
            recipient_ids=[recipient.external_id],
            status=Notification.Status.ROUTED,
        )
        delivery = Delivery.objects.create(
            notification=notification,
            recipient=recipient,
            channel=channel,
            traffic=ntype.traffic,
            provider=primary_provider(channel),
            is_test=True,
        )
    send_deliveries([delivery.id])
    delivery.refresh_from_db()
    return delivery
