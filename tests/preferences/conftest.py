"""Fixtures for preference tests: a marketing and a transactional type, sending, the clock."""

from __future__ import annotations

from datetime import datetime

import pytest
from django.test import TestCase
from django.utils import timezone

from notifications import clock, services
from notifications.models import Traffic
from tests.factories import CategoryFactory, RecipientFactory, add_template
from tests.notifications.conftest import api, api_key  # noqa: F401 - shared API fixtures

MARKETING_EMAIL = {
    "subject": "Deal {{ data.deal }}",
    "html": "<p>Deal {{ data.deal }}</p>"
    '<p><a href="{{ links.preferences_url }}">Preferences</a> '
    '<a href="{{ links.unsubscribe_url }}">Unsubscribe</a><br>{{ links.postal_address }}</p>',
    "text": "Deal {{ data.deal }}\nPreferences: {{ links.preferences_url }}\n"
    "Unsubscribe: {{ links.unsubscribe_url }}\n{{ links.postal_address }}",
}
RESET_EMAIL = {"subject": "Reset your password", "text": "Reset code {{ data.code }}"}


def make_type(key: str, traffic: str, category, channels=("email",), content=None):
    from tests.factories import NotificationTypeFactory

    ntype = NotificationTypeFactory(
        key=key, traffic=traffic, category=category, channels=list(channels)
    )
    for channel in channels:
        body = (
            content
            or {
                "email": MARKETING_EMAIL,
                "sms": {"text": "Deal {{ data.deal }}"},
                "in_app": {"title": "Deal {{ data.deal }}", "body": "", "link": ""},
            }[channel]
        )
        add_template(ntype, channel, body)
    return ntype


@pytest.fixture
def promotions(db):
    return CategoryFactory(key="promotions", name="Promotions")


@pytest.fixture
def marketing(promotions):
    return make_type("weekly-deals", Traffic.MARKETING, promotions)


@pytest.fixture
def password_reset(db):
    account = CategoryFactory(key="account", name="Account")
    return make_type("password-reset", Traffic.TRANSACTIONAL, account, content=RESET_EMAIL)


@pytest.fixture
def ada(db):
    return RecipientFactory(external_id="ada", email="ada@example.com", phone="+15550001111")


def send(ntype, recipients, data=None, key=None):
    """Accept an event and run routing and sending inline, as after a commit."""
    event = services.EventRequest(
        type_key=ntype.key,
        recipients=[r.external_id for r in recipients],
        data=data or {},
        idempotency_key=key,
    )
    with TestCase.captureOnCommitCallbacks(execute=True):
        accepted = services.notification_accept(api_key_id="test", event=event)
    assert accepted.error is None, accepted.error
    return accepted.notification


def set_now(moment: datetime) -> None:
    """Move the shared clock (every process reads it) to an absolute time."""
    clock.set_offset((moment - timezone.now()).total_seconds())
