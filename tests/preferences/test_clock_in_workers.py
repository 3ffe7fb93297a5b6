"""Quiet hours and digests through real worker processes, which read the same clock."""

from __future__ import annotations

import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from config.celery import MAINTENANCE_QUEUE
from notifications import services
from notifications.models import Delivery, Traffic
from notifications.tasks import release_due
from preferences.models import ConsentLog
from preferences.services import Actor, preferences_update
from preferences.tasks import send_digests

from .conftest import make_type, set_now

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PARIS = ZoneInfo("Europe/Paris")


def wait_for(predicate, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting for the workers")


def accept(ntype, external_id: str, data: dict) -> None:
    event = services.EventRequest(type_key=ntype.key, recipients=[external_id], data=data)
    assert services.notification_accept(api_key_id="e2e", event=event).error is None


def test_workers_defer_in_quiet_hours_send_at_their_end_and_fold_digests(
    live_workers, smtp_server, ada, promotions
):
    ada.timezone = "Europe/Paris"
    ada.save()
    deals = make_type("deals", Traffic.MARKETING, promotions)
    news_category = promotions.__class__.objects.create(key="news", name="News")
    news = make_type("news", Traffic.MARKETING, news_category)
    preferences_update(
        recipient=ada,
        changes={
            "quiet_hours": {"start": "22:00", "end": "08:00"},
            "categories": {"news": {"frequency": "daily"}},
        },
        actor=Actor(source=ConsentLog.Source.API),
    )
    live_workers(concurrency=1)
    set_now(datetime(2026, 12, 20, 23, 0, tzinfo=PARIS))
    accept(deals, "ada", {"deal": "night"})
    for n in (1, 2, 3):
        accept(news, "ada", {"deal": f"news-{n}"})
    wait_for(lambda: Delivery.objects.filter(status__in=["deferred", "digested"]).count() == 4)
    deferred = Delivery.objects.get(status="deferred")
    assert deferred.next_attempt_at == datetime(2026, 12, 21, 8, 0, tzinfo=PARIS)

    set_now(datetime(2026, 12, 21, 7, 59, tzinfo=PARIS))
    release_due.apply_async(queue=MAINTENANCE_QUEUE)
    send_digests.apply_async(queue=MAINTENANCE_QUEUE)
    time.sleep(1.5)  # the workers ran both tasks: still too early for either
    assert smtp_server.inbox.messages == []

    set_now(datetime(2026, 12, 21, 8, 0, 30, tzinfo=PARIS))
    release_due.apply_async(queue=MAINTENANCE_QUEUE)
    send_digests.apply_async(queue=MAINTENANCE_QUEUE)
    messages = smtp_server.inbox.wait_for(2)
    assert sorted(m["Subject"] for m in messages) == ["3 updates: News", "Deal night"]
    wait_for(lambda: not Delivery.objects.filter(status__in=["pending", "sending"]).exists())
    assert Delivery.objects.filter(status="sent").count() == 2
