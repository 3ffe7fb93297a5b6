"""Redis failing under a provider's breaker or send rate strands no batch in ``sending``."""

from __future__ import annotations

import socket

import pytest
from django.test import TestCase, override_settings

from notifications import clock
from notifications.models import Delivery
from notifications.sending import send_deliveries
from tests.factories import NotificationFactory, RecipientFactory, notification_type_with_templates

pytestmark = pytest.mark.django_db


@pytest.fixture
def unreachable_redis() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"  # nothing listens there once the probe is closed


def _in_app_batch(count: int) -> list[int]:
    ntype = notification_type_with_templates(key="notice", channels=("in_app",))
    notification = NotificationFactory(type=ntype, data={"order_id": "A-1"})
    return [
        Delivery.objects.create(
            notification=notification,
            recipient=RecipientFactory(),
            channel="in_app",
            provider="in_app",
            traffic="transactional",
            status=Delivery.Status.PENDING,
        ).id
        for _ in range(count)
    ]


def _send(ids: list[int]) -> list[Delivery]:
    with TestCase.captureOnCommitCallbacks(execute=False):
        send_deliveries(ids)
    return list(Delivery.objects.filter(id__in=ids).order_by("id"))


def test_a_batch_is_sent_and_recorded_when_its_breaker_cannot_be_reached(unreachable_redis):
    ids = _in_app_batch(3)
    dead_cache = {"default": {"BACKEND": "config.cache.RedisCache", "LOCATION": unreachable_redis}}

    # The test clock reads its offset from the cache: production's clock does not.
    with override_settings(CACHES=dead_cache, CLOCK_OFFSET_ENABLED=False):
        sent = _send(ids)

    assert [d.status for d in sent] == ["sent"] * 3
    assert all(d.sent_at for d in sent)


def test_a_batch_waits_in_postgres_when_its_send_rate_cannot_be_read(settings, unreachable_redis):
    ids = _in_app_batch(3)
    settings.PROVIDERS = {
        **settings.PROVIDERS,
        "in_app": {**settings.PROVIDERS["in_app"], "rate_limit": {"rate": 100}},
    }
    settings.REDIS_URL = unreachable_redis

    waiting = _send(ids)

    assert [(d.status, d.attempts) for d in waiting] == [("deferred", 0)] * 3
    assert all(25 <= (d.next_attempt_at - clock.now()).total_seconds() <= 30 for d in waiting)
