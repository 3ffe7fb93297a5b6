"""Outbound webhooks: signed POSTs to a real loopback receiver, each outcome by kind."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time

import pytest

from channels.base import AMBIGUOUS, PERMANENT, TRANSIENT, Message
from channels.webhook import WebhookProvider
from tests.channels.raw_receivers import dribble, one_shot_receiver
from tests.support.http import ok_json
from tests.support.ports import free_port

SECRET = "whsec-test"


def verify(secret: str, header: str, body: bytes, tolerance: int = 300) -> bool:
    """What a receiver does, written from docs/webhooks.md (not from Clarion's code)."""
    pairs = [item.split("=", 1) for item in header.split(",")]
    timestamp = int(next(value for key, value in pairs if key == "t"))
    if abs(time.time() - timestamp) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return any(
        hmac.compare_digest(expected.hexdigest(), value) for key, value in pairs if key == "v1"
    )


def message(url: str, delivery_id: int = 1, payload=None) -> Message:
    return Message(
        delivery_id=delivery_id,
        to=url,
        content={"payload": payload if payload is not None else {"order": "A-1"}},
        metadata={"notification_id": "n-1", "type": "order-shipped"},
    )


@pytest.fixture
def provider(settings):
    settings.WEBHOOK_SIGNING_SECRET = SECRET
    return WebhookProvider(name="webhook", channel="webhook")


def test_signature_verifies_on_a_real_receiver(provider, http_server):
    def receiver(request):
        valid = verify(SECRET, request.headers["Clarion-Signature"], request.body)
        return (204, {}, b"") if valid else (401, {}, b"bad signature")

    http_server.responder = receiver
    [outcome] = provider.send_batch([message(f"{http_server.url}/hook", payload={"x": "é"})])
    assert outcome.sent, outcome
    [request] = http_server.requests
    assert request.method == "POST"
    assert request.path == "/hook"
    assert request.json() == {"x": "é"}
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Clarion-Delivery-Id"] == "1"
    assert request.headers["Clarion-Notification-Id"] == "n-1"
    assert request.headers["Clarion-Event"] == "order-shipped"
    assert request.headers["User-Agent"].startswith("Clarion-Webhook/")


def test_a_tampered_body_does_not_verify(provider, http_server):
    provider.send_batch([message(f"{http_server.url}/hook")])
    [request] = http_server.requests
    assert verify(SECRET, request.headers["Clarion-Signature"], request.body)
    assert not verify(SECRET, request.headers["Clarion-Signature"], request.body + b" ")
    assert not verify("other", request.headers["Clarion-Signature"], request.body)


def test_secret_can_come_from_a_file(http_server, tmp_path, monkeypatch):
    from config.settings import env

    (tmp_path / "secret").write_text("from-a-file\n")
    monkeypatch.setenv("WEBHOOK_SIGNING_SECRET_FILE", str(tmp_path / "secret"))
    provider = WebhookProvider(
        name="webhook", channel="webhook", secret=env("WEBHOOK_SIGNING_SECRET")
    )
    provider.send_batch([message(f"{http_server.url}/hook")])
    [request] = http_server.requests
    assert verify("from-a-file", request.headers["Clarion-Signature"], request.body)


def test_while_rotating_both_the_new_and_the_old_secret_verify(settings, http_server):
    settings.WEBHOOK_SIGNING_SECRET = "new-secret, old-secret"
    WebhookProvider(name="webhook", channel="webhook").send_batch([message(http_server.url)])
    [request] = http_server.requests
    header = request.headers["Clarion-Signature"]
    assert header.count("v1=") == 2
    assert verify("new-secret", header, request.body)
    assert verify("old-secret", header, request.body)
    assert not verify("other-secret", header, request.body)


def test_without_a_setting_the_secret_is_derived_and_is_not_secret_key(settings, http_server):
    from channels.webhook import signing_secret

    settings.WEBHOOK_SIGNING_SECRET = ""
    WebhookProvider(name="webhook", channel="webhook").send_batch([message(http_server.url)])
    [request] = http_server.requests
    assert signing_secret() != settings.SECRET_KEY
    assert verify(signing_secret(), request.headers["Clarion-Signature"], request.body)
    assert not verify(settings.SECRET_KEY, request.headers["Clarion-Signature"], request.body)


def test_a_batch_shares_one_connection(provider, http_server):
    outcomes = provider.send_batch([message(f"{http_server.url}/h", i) for i in (1, 2, 3)])
    assert all(o.sent for o in outcomes)
    assert len({r.peer for r in http_server.requests}) == 1
    assert [r.headers["Clarion-Delivery-Id"] for r in http_server.requests] == ["1", "2", "3"]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/hook",
        "http://[::1]:{port}/hook",
        "http://10.0.0.1:{port}/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://localhost:{port}/hook",
    ],
)
def test_private_targets_are_refused_when_loopback_is_not_allowed(
    provider, http_server, settings, url
):
    settings.WEBHOOK_ALLOW_LOOPBACK = False
    [outcome] = provider.send_batch([message(url.format(port=http_server.port))])
    assert outcome.error_kind == PERMANENT
    assert "not allowed" in outcome.error
    assert http_server.requests == []
    assert not outcome.reached_provider


def test_a_name_resolving_to_a_private_address_is_refused(provider, settings, monkeypatch):
    from channels import http as outbound

    settings.WEBHOOK_ALLOW_LOOPBACK = False
    monkeypatch.setattr(outbound, "resolve", lambda host, port: [(socket.AF_INET, "10.0.0.7")])
    [outcome] = provider.send_batch([message("https://hooks.customer.example/in")])
    assert outcome.error_kind == PERMANENT
    assert "10.0.0.7" in outcome.error


def test_redirects_are_not_followed(provider, http_server):
    http_server.responder = lambda r: (
        (302, {"Location": f"{http_server.url}/elsewhere"}, b"") if r.path == "/hook" else ok_json()
    )
    [outcome] = provider.send_batch([message(f"{http_server.url}/hook")])
    assert outcome.error_kind == PERMANENT
    assert "redirect" in outcome.error
    assert [r.path for r in http_server.requests] == ["/hook"]


@pytest.mark.parametrize(
    "status, headers, kind, retry_after",
    [
        (500, {}, TRANSIENT, None),
        (503, {"Retry-After": "30"}, TRANSIENT, 30.0),
        (429, {"Retry-After": "7"}, TRANSIENT, 7.0),
        (429, {}, TRANSIENT, None),
        (408, {}, TRANSIENT, None),
        (400, {}, PERMANENT, None),
        (404, {}, PERMANENT, None),
        (410, {}, PERMANENT, None),
    ],
)
def test_statuses_map_to_kinds(provider, http_server, status, headers, kind, retry_after):
    http_server.responder = lambda r: (status, headers, b"nope")
    [outcome] = provider.send_batch([message(f"{http_server.url}/hook")])
    assert (outcome.error_kind, outcome.retry_after) == (kind, retry_after)
    assert str(status) in outcome.error
    assert outcome.reached_provider


def test_retry_after_as_an_http_date(provider, http_server):
    when = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 120))
    http_server.responder = lambda r: (429, {"Retry-After": when}, b"")
    [outcome] = provider.send_batch([message(f"{http_server.url}/hook")])
    assert outcome.error_kind == TRANSIENT
    assert 100 < outcome.retry_after <= 120


def test_connection_refused_is_transient(provider):
    [outcome] = provider.send_batch([message(f"http://127.0.0.1:{free_port()}/hook")])
    assert outcome.error_kind == TRANSIENT
    assert not outcome.reached_provider  # its send-rate token goes back


def test_read_timeout_after_sending_is_ambiguous(settings, http_server):
    settings.WEBHOOK_SIGNING_SECRET = SECRET
    gate = threading.Event()
    http_server.responder = lambda r: (gate.wait(5), ok_json())[1]
    provider = WebhookProvider(name="webhook", channel="webhook", timeout=0.3)
    try:
        [outcome] = provider.send_batch([message(f"{http_server.url}/hook")])
    finally:
        gate.set()
    assert outcome.error_kind == AMBIGUOUS
    assert outcome.reached_provider
    assert len(http_server.requests) == 1


def test_missing_url_and_bad_payload_are_permanent(provider):
    no_url, bad = provider.send_batch([message("", 1), message("http://x.example", 2, "{nope")])
    assert no_url.error_kind == PERMANENT
    assert bad.error_kind == PERMANENT
    assert not no_url.reached_provider and not bad.reached_provider


def test_payload_authored_as_json_text_is_posted_as_json(provider, http_server):
    provider.send_batch([message(f"{http_server.url}/hook", payload='{"order": "B-2"}')])
    assert json.loads(http_server.requests[0].body) == {"order": "B-2"}


# --- Retry-After as receivers really send it -----------------------------------------------


@pytest.mark.parametrize("value", ["999999999999", "Fri, 31 Dec 9999 23:59:59 GMT"])
def test_a_retry_after_far_away_is_capped(provider, http_server, settings, value):
    http_server.responder = lambda r: (429, {"Retry-After": value}, b"")
    [outcome] = provider.send_batch([message(f"{http_server.url}/hook")])
    assert outcome.error_kind == TRANSIENT
    assert outcome.retry_after == settings.RETRY_BACKOFF_CAP_SECONDS


@pytest.mark.django_db
def test_a_delivery_answered_with_a_huge_retry_after_is_recorded_and_deferred(
    provider, http_server, settings
):
    from django.test import TestCase

    from notifications import clock, outcomes
    from notifications.models import Delivery
    from tests.factories import NotificationFactory, NotificationTypeFactory, RecipientFactory

    delivery = Delivery.objects.create(
        notification=NotificationFactory(type=NotificationTypeFactory(channels=["webhook"])),
        recipient=RecipientFactory(),
        channel="webhook",
        provider="webhook",
        traffic="transactional",
        status=Delivery.Status.SENDING,
        attempts=1,
    )
    http_server.responder = lambda r: (429, {"Retry-After": "999999999999"}, b"")
    results = provider.send_batch([message(f"{http_server.url}/hook", delivery.id)])
    with TestCase.captureOnCommitCallbacks(execute=False):
        outcomes.record({delivery.id: delivery}, results)
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.DEFERRED
    wait = (delivery.next_attempt_at - clock.now()).total_seconds()
    assert wait <= settings.RETRY_BACKOFF_CAP_SECONDS


def test_a_retry_after_of_non_ascii_digits_is_ignored_and_the_batch_goes_on(provider, http_server):
    # U+00B2 (superscript two) is Latin-1, so it arrives as sent; str.isdigit() takes it.
    http_server.responder = lambda r: (
        (429, {"Retry-After": "\u00b2"}, b"") if r.path == "/busy" else ok_json()
    )
    busy, fine = provider.send_batch(
        [message(f"{http_server.url}/busy", 1), message(f"{http_server.url}/fine", 2)]
    )
    assert (busy.error_kind, busy.retry_after) == (TRANSIENT, None)
    assert "429" in busy.error
    assert fine.sent, fine


@pytest.mark.parametrize(
    "value, seconds",
    [
        ("\u00b2", None),
        ("\u0663", None),  # ARABIC-INDIC DIGIT THREE: float() would take it
        ("1e3", None),
        ("-5", None),
        ("soon", None),
        ("Mon, 99 Jan 2024 00:00:00 GMT", None),
        (" 7 ", 7.0),
        ("Mon, 01 Jan 2024 00:01:40 -0000", 100.0),
        ("Sun, 31 Dec 2023 23:00:00 GMT", 0.0),
    ],
)
def test_retry_after_values_that_cannot_be_read_are_ignored(value, seconds):
    from channels.http import retry_after_seconds

    now = 1704067200.0  # 2024-01-01T00:00:00Z
    assert retry_after_seconds(value, now=now) == seconds


# --- the timeout bounds the whole answer ---------------------------------------------------


def slow_provider(settings, timeout: float) -> WebhookProvider:
    settings.WEBHOOK_SIGNING_SECRET = SECRET
    return WebhookProvider(name="webhook", channel="webhook", timeout=timeout)


def test_headers_dribbled_past_the_timeout_are_cut_off_as_ambiguous(settings):
    headers = [b"HTTP/1.1 200 OK\r\n"] + [b"X-Slow-%d: 1\r\n" % i for i in range(8)]
    dribbler = dribble([*headers, b"Content-Length: 0\r\n\r\n"], every=0.6)
    with one_shot_receiver(dribbler) as (port, received):
        started = time.monotonic()
        [outcome] = slow_provider(settings, 1).send_batch([message(f"http://127.0.0.1:{port}/")])
        elapsed = time.monotonic() - started
    assert outcome.error_kind == AMBIGUOUS, outcome
    assert len(received) == 1
    assert elapsed < 2.5, elapsed


def test_a_body_dribbled_past_the_timeout_is_cut_off_and_the_status_stands(settings):
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n"
    with one_shot_receiver(dribble([head, *[b"x"] * 20], every=0.25)) as (port, _):
        started = time.monotonic()
        [outcome] = slow_provider(settings, 1).send_batch([message(f"http://127.0.0.1:{port}/")])
        elapsed = time.monotonic() - started
    assert outcome.sent, outcome
    assert elapsed < 2.5, elapsed


def test_an_answer_within_the_timeout_is_read_whole(settings):
    head = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\n"
    with one_shot_receiver(dribble([head, b"do", b"wn"], every=0.1)) as (port, _):
        [outcome] = slow_provider(settings, 2).send_batch([message(f"http://127.0.0.1:{port}/")])
    assert outcome.error_kind == TRANSIENT
    assert outcome.error == "HTTP 503: down"
