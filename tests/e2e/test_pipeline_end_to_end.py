"""One POST through real worker processes to a real SMTP listener and the feed API."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from rest_framework_api_key.models import APIKey

from notifications.models import Delivery, FeedItem, Notification
from tests.factories import RecipientFactory, notification_type_with_templates

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def wait_until_idle(timeout: float = 30) -> None:
    """Until every notification is routed and no delivery is pending, deferred or sending."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = Notification.objects.filter(status="accepted").exists() or (
            Delivery.objects.filter(status__in=Delivery.OPEN_STATUSES).exists()
        )
        if not busy:
            return
        time.sleep(0.1)
    raise AssertionError("the pipeline did not go idle")


def counts() -> dict[str, int]:
    return {
        "notifications": Notification.objects.count(),
        "deliveries": Delivery.objects.count(),
        "feed": FeedItem.objects.count(),
    }


@pytest.fixture
def system(live_server, live_workers, smtp_server):
    ntype = notification_type_with_templates(key="order-shipped", channels=("email", "in_app"))
    RecipientFactory(external_id="42", email="ada@example.com")
    _, key = APIKey.objects.create_key(name="e2e")
    live_workers(concurrency=2)
    session = requests.Session()
    session.headers["Authorization"] = f"Api-Key {key}"
    return {"url": live_server.url, "http": session, "smtp": smtp_server, "type": ntype}


def test_one_post_reaches_smtp_and_feed_once_and_replays_change_nothing(system):
    url, http, smtp = system["url"], system["http"], system["smtp"]
    body = {"type": "order-shipped", "recipients": ["42"], "data": {"order_id": "A-1"}}
    first = http.post(f"{url}/api/v1/notifications/", json=body, headers={"Idempotency-Key": "e2e"})
    assert first.status_code == 202, first.text
    wait_until_idle()
    [message] = smtp.inbox.wait_for(1)
    assert message["Subject"] == "Order A-1 shipped"
    assert message["To"] == "ada@example.com"
    feed = http.get(f"{url}/api/v1/recipients/42/feed/").json()
    assert feed["unread_count"] == 1
    assert feed["items"][0]["title"] == "Order A-1 shipped"
    detail = http.get(f"{url}/api/v1/notifications/{first.json()['id']}/").json()
    assert {d["status"] for d in detail["deliveries"]} == {"sent"}

    before = counts()
    again = http.post(f"{url}/api/v1/notifications/", json=body, headers={"Idempotency-Key": "e2e"})
    assert again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    wait_until_idle()
    assert counts() == before
    assert len(smtp.inbox.messages) == 1

    other = {**body, "data": {"order_id": "B-2"}}
    reused = http.post(
        f"{url}/api/v1/notifications/", json=other, headers={"Idempotency-Key": "e2e"}
    )
    assert reused.status_code == 422
    assert reused.json()["error"]["code"] == "idempotency_key_reused"
    assert counts() == before


def test_twenty_concurrent_identical_posts_make_one_notification(system):
    url, http, smtp = system["url"], system["http"], system["smtp"]
    body = {"type": "order-shipped", "recipients": ["42"], "data": {"order_id": "C-3"}}

    def post(_):
        response = http.post(
            f"{url}/api/v1/notifications/", json=body, headers={"Idempotency-Key": "burst"}
        )
        return response.status_code, response.json()

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(post, range(20)))
    statuses = [status for status, _ in answers]
    assert set(statuses) <= {202, 409}, statuses
    ids = {payload["id"] for status, payload in answers if status == 202}
    assert len(ids) == 1
    wait_until_idle()
    assert Notification.objects.count() == 1
    assert len(smtp.inbox.wait_for(1)) == 1
    assert Delivery.objects.filter(channel="email", status="sent").count() == 1
