"""Intake reads a notification type once per TYPE_CACHE_SECONDS, and at once after a change."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from notifications import types
from notifications.models import NotificationType
from tests.factories import NotificationTypeFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def empty_cache():
    types._cache.clear()
    yield
    types._cache.clear()


def reads(keys) -> tuple[dict, int]:
    with CaptureQueriesContext(connection) as captured:
        found = types.types_by_key(keys)
    return found, len(captured)


def test_a_type_is_read_once_within_the_cache_time(settings):
    settings.TYPE_CACHE_SECONDS = 60
    ntype = NotificationTypeFactory(key="order-shipped")

    first, first_queries = reads(["order-shipped"])
    second, second_queries = reads(["order-shipped"])

    assert first == second == {"order-shipped": ntype}
    assert (first_queries, second_queries) == (1, 0)


def test_a_type_is_read_again_once_its_time_is_up(settings, monkeypatch):
    settings.TYPE_CACHE_SECONDS = 2
    NotificationTypeFactory(key="order-shipped")
    reads(["order-shipped"])
    # Another node deactivates it: no signal reaches this process.
    NotificationType.objects.filter(key="order-shipped").update(is_active=False)
    now = types.time.monotonic()

    monkeypatch.setattr(types.time, "monotonic", lambda: now + 1)
    assert reads(["order-shipped"])[0]["order-shipped"].is_active is True
    monkeypatch.setattr(types.time, "monotonic", lambda: now + 3)
    assert reads(["order-shipped"])[0]["order-shipped"].is_active is False


def test_a_change_saved_in_this_process_applies_at_once(settings):
    settings.TYPE_CACHE_SECONDS = 60
    ntype = NotificationTypeFactory(key="order-shipped")
    reads(["order-shipped"])

    ntype.is_active = False
    ntype.save()

    assert reads(["order-shipped"])[0]["order-shipped"].is_active is False


def test_an_unknown_key_is_not_remembered(settings):
    settings.TYPE_CACHE_SECONDS = 60
    assert reads(["order-shipped"]) == ({}, 1)

    NotificationTypeFactory(key="order-shipped")

    assert list(reads(["order-shipped"])[0]) == ["order-shipped"]


def test_an_event_for_a_deactivated_type_is_refused_at_once(api, settings):
    settings.TYPE_CACHE_SECONDS = 60
    ntype = NotificationTypeFactory(key="order-shipped", channels=["in_app"])
    body = {"type": "order-shipped", "recipients": [{"external_id": "u1"}], "data": {}}
    assert api.post("/api/v1/notifications/", body, format="json").status_code == 202

    ntype.is_active = False
    ntype.save()

    response = api.post("/api/v1/notifications/", body, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unknown_notification_type"
