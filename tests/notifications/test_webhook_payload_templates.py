"""Webhook payload templates render JSON text; one that is not JSON fails only its delivery."""

from __future__ import annotations

import pytest
from django.test import TestCase

from notifications import services
from notifications.models import Delivery
from tests.factories import NotificationTypeFactory, RecipientFactory, add_template

pytestmark = pytest.mark.django_db


def send(ntype, recipient, data):
    event = services.EventRequest(type_key=ntype.key, recipients=[recipient.external_id], data=data)
    with TestCase.captureOnCommitCallbacks(execute=True):
        accepted = services.notification_accept(api_key_id="k", event=event)
    return Delivery.objects.get(notification=accepted.notification, channel="webhook")


def test_a_payload_that_renders_to_broken_json_fails_with_a_clear_error():
    ntype = NotificationTypeFactory(channels=["webhook"])
    # Without | tojson, a quote in the data breaks the JSON.
    add_template(ntype, "webhook", {"payload": '{"note": "{{ data.note }}"}'})
    recipient = RecipientFactory(webhook_url="https://hooks.example.com/in")

    delivery = send(ntype, recipient, {"note": 'say "hi"'})

    assert delivery.status == Delivery.Status.FAILED
    assert delivery.error_kind == "permanent"
    assert "webhook payload is not JSON" in delivery.error_message
