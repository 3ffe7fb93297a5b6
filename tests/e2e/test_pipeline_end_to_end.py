"""One POST through real worker processes to all four channels: a real SMTP listener, a fake
Twilio API (the real twilio client pointed at it), a webhook receiver that verifies the
signature, and the feed API."""

from __future__ import annotations

import hashlib
import hmac
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from rest_framework_api_key.models import APIKey

from notifications.models import Delivery, FeedItem, Notification
from tests.factories import RecipientFactory, notification_type_with_templates
from tests.support.http import RecordingServer
from tests.support.twilio import FakeTwilio

SIGNING_SECRET = "e2e-signing-secret"
TWILIO_SID, TWILIO_TOKEN = "AC" + "e2e0" * 8, "e2e-twilio-token"
ALL_CHANNELS = ("email", "sms", "in_app", "webhook")

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


def counts(system) -> dict[str, int]:
    return {
        "notifications": Notification.objects.count(),
        "deliveries": Delivery.objects.count(),
        "feed": FeedItem.objects.count(),
        "emails": len(system["smtp"].inbox.messages),
        "sms": len(system["twilio"].messages()),
        "webhooks": len(system["receiver"].requests),
    }


def signature_valid(request) -> bool:
    """The receiver's check, as docs/webhooks.md tells receivers to write it."""
    parts = dict(item.split("=", 1) for item in request.headers["Clarion-Signature"].split(","))
    if abs(time.time() - int(parts["t"])) > 300:
        return False
    signed = f"{parts['t']}.".encode() + request.body
    expected = hmac.new(SIGNING_SECRET.encode(), signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])


@pytest.fixture
def receiver():
    """A webhook receiver that answers 401 to a request whose signature does not verify."""
    server = RecordingServer(
        lambda request: (204, {}, b"") if signature_valid(request) else (401, {}, b"bad")
    )
    with server:
        yield server


@pytest.fixture
def system(live_server, live_workers, smtp_server, http_server, receiver):
    twilio = FakeTwilio(http_server)
    http_server.responder = twilio.respond
    ntype = notification_type_with_templates(key="order-shipped", channels=ALL_CHANNELS)
    RecipientFactory(
        external_id="42",
        email="ada@example.com",
        phone="+15550004242",
        webhook_url=f"{receiver.url}/clarion",
    )
    _, key = APIKey.objects.create_key(name="e2e")
    live_workers(
        concurrency=2,
        env={
            "SMS_BACKEND": "twilio",
            "TWILIO_ACCOUNT_SID": TWILIO_SID,
            "TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
            "TWILIO_FROM_NUMBER": "+15559990000",
            "TWILIO_API_BASE_URL": http_server.url,
            "WEBHOOK_SIGNING_SECRET": SIGNING_SECRET,
        },
    )
    session = requests.Session()
    session.headers["Authorization"] = f"Api-Key {key}"
    return {
        "url": live_server.url,
        "http": session,
        "smtp": smtp_server,
        "twilio": twilio,
        "receiver": receiver,
        "type": ntype,
    }


def test_one_post_reaches_all_four_channels_once_and_replays_change_nothing(system):
    url, http, smtp = system["url"], system["http"], system["smtp"]
    body = {"type": "order-shipped", "recipients": ["42"], "data": {"order_id": "A-1"}}
    first = http.post(f"{url}/api/v1/notifications/", json=body, headers={"Idempotency-Key": "e2e"})
    assert first.status_code == 202, first.text
    wait_until_idle()
    notification_id = first.json()["id"]

    [message] = smtp.inbox.wait_for(1)
    assert message["Subject"] == "Order A-1 shipped"
    assert message["To"] == "ada@example.com"

    [sms] = system["twilio"].messages()
    assert sms == {"To": "+15550004242", "From": "+15559990000", "Body": "Order A-1 shipped"}

    [hook] = system["receiver"].requests
    assert signature_valid(hook)
    assert hook.path == "/clarion"
    assert hook.json()["data"] == {"order_id": "A-1"}
    assert hook.json()["notification"]["id"] == notification_id
    assert hook.headers["Clarion-Event"] == "order-shipped"

    feed = http.get(f"{url}/api/v1/recipients/42/feed/").json()
    assert feed["unread_count"] == 1
    assert feed["items"][0]["title"] == "Order A-1 shipped"

    detail = http.get(f"{url}/api/v1/notifications/{notification_id}/").json()
    statuses = {d["channel"]: d["status"] for d in detail["deliveries"]}
    assert statuses == dict.fromkeys(ALL_CHANNELS, "sent")
    sms_delivery = Delivery.objects.get(channel="sms")
    assert sms_delivery.provider_message_id == system["twilio"].sids[0]

    before = counts(system)
    assert before == {
        "notifications": 1,
        "deliveries": 4,
        "feed": 1,
        "emails": 1,
        "sms": 1,
        "webhooks": 1,
    }
    again = http.post(f"{url}/api/v1/notifications/", json=body, headers={"Idempotency-Key": "e2e"})
    assert again.status_code == 202
    assert again.json()["id"] == notification_id
    wait_until_idle()
    assert counts(system) == before

    other = {**body, "data": {"order_id": "B-2"}}
    reused = http.post(
        f"{url}/api/v1/notifications/", json=other, headers={"Idempotency-Key": "e2e"}
    )
    assert reused.status_code == 422
    assert reused.json()["error"]["code"] == "idempotency_key_reused"
    wait_until_idle()
    assert counts(system) == before


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
    assert len(system["twilio"].messages()) == 1
    assert len(system["receiver"].requests) == 1
    assert FeedItem.objects.count() == 1
    sent = Delivery.objects.filter(status="sent")
    assert sorted(sent.values_list("channel", flat=True)) == sorted(ALL_CHANNELS)
