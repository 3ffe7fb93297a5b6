"""A transactional event is claimed by its routing transaction and sent when that commits."""

from __future__ import annotations

import pytest
from django.test import TestCase

from notifications import journal, services
from notifications.models import Delivery
from tests.factories import (
    RecipientFactory,
    notification_type_with_templates,
)

pytestmark = pytest.mark.django_db


def accept(ntype, *people):
    event = services.EventRequest(type_key=ntype.key, recipients=list(people), data={"order_id": 7})
    return services.notification_accept(api_key_id="k", event=event).notification


def test_routing_claims_a_receipt_and_notes_it_in_the_journal_before_it_commits(settings):
    ntype = notification_type_with_templates(key="receipt", channels=("email",))
    RecipientFactory(external_id="ann", email="ann@example.com")
    with TestCase.captureOnCommitCallbacks(execute=False) as routing:
        notification = accept(ntype, "ann")
    # The accept transaction queued routing; run it, but hold routing's own commit hooks.
    with TestCase.captureOnCommitCallbacks(execute=False) as sends:
        for callback in routing:
            callback()
    delivery = Delivery.objects.get(notification=notification)
    assert (delivery.status, delivery.attempts) == ("sending", 1)
    assert delivery.claimed_at is not None
    assert journal.progress({delivery.id: delivery.claimed_at}) == {delivery.id: ("claimed", "")}
    for callback in sends:
        callback()
    delivery.refresh_from_db()
    assert delivery.status == "sent"
    assert journal.progress({delivery.id: delivery.claimed_at})[delivery.id][0] == "sent"


def test_an_event_larger_than_a_send_batch_is_queued_not_claimed(settings):
    settings.SEND_BATCH_SIZE = 2
    ntype = notification_type_with_templates(key="receipt", channels=("email",))
    for name in ("a", "b", "c"):
        RecipientFactory(external_id=name, email=f"{name}@example.com")
    with TestCase.captureOnCommitCallbacks(execute=False) as routing:
        notification = accept(ntype, "a", "b", "c")
    with TestCase.captureOnCommitCallbacks(execute=False):
        for callback in routing:
            callback()
    statuses = set(
        Delivery.objects.filter(notification=notification).values_list("status", flat=True)
    )
    assert statuses == {"pending"}


def test_marketing_is_never_claimed_by_routing():
    ntype = notification_type_with_templates(key="deals", channels=("email",), traffic="marketing")
    RecipientFactory(external_id="ann", email="ann@example.com")
    with TestCase.captureOnCommitCallbacks(execute=False) as routing:
        notification = accept(ntype, "ann")
    with TestCase.captureOnCommitCallbacks(execute=False):
        for callback in routing:
            callback()
    assert Delivery.objects.get(notification=notification).status == "pending"
