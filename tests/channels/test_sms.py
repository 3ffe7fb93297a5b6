"""Twilio SMS through the real twilio client against a fake Twilio API on loopback."""

from __future__ import annotations

import base64
import io
import threading

import pytest

from channels.base import AMBIGUOUS, PERMANENT, TRANSIENT, Message
from channels.sms import ConsoleSmsProvider, TwilioProvider
from tests.support.http import ok_json
from tests.support.ports import free_port
from tests.support.twilio import FakeTwilio

SID, TOKEN = "AC0123456789abcdef0123456789abcdef", "twilio-token"


def sms(delivery_id: int = 1, to: str = "+15550001111", text: str = "Order A-1 shipped"):
    return Message(delivery_id=delivery_id, to=to, content={"text": text})


def provider(base_url: str, **options) -> TwilioProvider:
    options = {
        "account_sid": SID,
        "auth_token": TOKEN,
        "from_number": "+15559990000",
        "base_url": base_url,
        **options,
    }
    return TwilioProvider(name="sms", channel="sms", **options)


@pytest.fixture
def twilio(http_server):
    fake = FakeTwilio(http_server)
    http_server.responder = fake.respond
    return fake


def test_twilio_receives_to_from_body_and_credentials(twilio, http_server):
    [outcome] = provider(http_server.url).send_batch([sms()])
    assert outcome.sent, outcome
    assert outcome.provider_message_id == twilio.sids[0]
    [request] = http_server.requests
    assert request.method == "POST"
    assert request.path == f"/2010-04-01/Accounts/{SID}/Messages.json"
    assert request.form() == {
        "To": "+15550001111",
        "From": "+15559990000",
        "Body": "Order A-1 shipped",
    }
    expected = base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
    assert request.headers["Authorization"] == f"Basic {expected}"


def test_messaging_service_and_status_callback_are_sent_when_configured(twilio, http_server):
    configured = provider(
        http_server.url,
        from_number="",
        messaging_service_sid="MG0123",
        status_callback="https://clarion.example/webhooks/twilio/status/",
    )
    [outcome] = configured.send_batch([sms()])
    assert outcome.sent
    form = http_server.requests[0].form()
    assert form["MessagingServiceSid"] == "MG0123"
    assert "From" not in form
    assert form["StatusCallback"] == "https://clarion.example/webhooks/twilio/status/"


def test_status_callback_follows_the_public_base_url(settings, twilio, http_server):
    settings.TWILIO_STATUS_CALLBACK_URL = "https://clarion.example/webhooks/twilio/status/"
    provider(http_server.url).send_batch([sms()])
    assert http_server.requests[0].form()["StatusCallback"].startswith("https://clarion.example/")


def test_a_batch_shares_one_connection(twilio, http_server):
    outcomes = provider(http_server.url).send_batch([sms(i, f"+1555000000{i}") for i in (1, 2, 3)])
    assert all(o.sent for o in outcomes)
    assert len(set(twilio.sids)) == 3
    assert len({r.peer for r in http_server.requests}) == 1


@pytest.mark.parametrize(
    "status, code, kind",
    [
        (400, 21211, PERMANENT),
        (400, 21614, PERMANENT),
        (400, 21610, PERMANENT),
        (401, 20003, PERMANENT),
        (404, 20404, PERMANENT),
        (429, 20429, TRANSIENT),
        (500, 20500, TRANSIENT),
        (503, 20503, TRANSIENT),
    ],
)
def test_twilio_errors_map_to_kinds(twilio, http_server, status, code, kind):
    twilio.fail_with(status, code)
    [outcome] = provider(http_server.url).send_batch([sms()])
    assert outcome.error_kind == kind
    assert f"code {code}" in outcome.error


def test_too_many_requests_carries_retry_after(twilio, http_server):
    twilio.fail_with(429, 20429, headers={"Retry-After": "12"})
    [outcome] = provider(http_server.url).send_batch([sms()])
    assert (outcome.error_kind, outcome.retry_after) == (TRANSIENT, 12.0)


def test_stop_reason_is_named_in_the_error(twilio, http_server):
    twilio.fail_with(400, 21610)
    [outcome] = provider(http_server.url).send_batch([sms()])
    assert "unsubscribed" in outcome.error


def test_what_is_refused_before_calling_twilio_never_reached_it(http_server):
    (no_number,) = provider(http_server.url).send_batch([sms(to="")])
    (unconfigured,) = provider(http_server.url, from_number="").send_batch([sms()])
    assert (no_number.error_kind, unconfigured.error_kind) == (PERMANENT, PERMANENT)
    assert not no_number.reached_provider and not unconfigured.reached_provider
    assert http_server.requests == []


def test_connection_refused_is_transient():
    [outcome] = provider(f"http://127.0.0.1:{free_port()}").send_batch([sms()])
    assert outcome.error_kind == TRANSIENT
    assert not outcome.reached_provider  # its send-rate token goes back


def test_read_timeout_is_ambiguous(http_server):
    gate = threading.Event()
    http_server.responder = lambda r: (gate.wait(5), ok_json())[1]
    try:
        [outcome] = provider(http_server.url, timeout=0.3).send_batch([sms()])
    finally:
        gate.set()
    assert outcome.error_kind == AMBIGUOUS
    assert outcome.reached_provider


def test_an_unreadable_success_is_ambiguous(http_server):
    http_server.responder = lambda r: (201, {"Content-Type": "application/json"}, b"<html>")
    [outcome] = provider(http_server.url).send_batch([sms()])
    assert outcome.error_kind == AMBIGUOUS


def test_missing_credentials_fail_permanently_without_a_request(http_server):
    [outcome] = provider(http_server.url, auth_token="x", account_sid="").send_batch([sms()])
    assert outcome.error_kind == PERMANENT
    assert http_server.requests == []


def test_credentials_can_come_from_files(settings, twilio, http_server, tmp_path, monkeypatch):
    from config.settings import env

    (tmp_path / "token").write_text("token-from-file\n")
    monkeypatch.setenv("TWILIO_AUTH_TOKEN_FILE", str(tmp_path / "token"))
    settings.TWILIO_AUTH_TOKEN = env("TWILIO_AUTH_TOKEN")
    TwilioProvider(
        name="sms",
        channel="sms",
        account_sid=SID,
        from_number="+15559990000",
        base_url=http_server.url,
    ).send_batch([sms()])
    expected = base64.b64encode(f"{SID}:token-from-file".encode()).decode()
    assert http_server.requests[0].headers["Authorization"] == f"Basic {expected}"


def test_console_provider_prints_each_message():
    out = io.StringIO()
    outcomes = ConsoleSmsProvider(name="sms", channel="sms", stream=out).send_batch(
        [sms(7, "+15550007777", "Your code is 123456")]
    )
    assert outcomes[0].sent
    assert "+15550007777" in out.getvalue()
    assert "Your code is 123456" in out.getvalue()
