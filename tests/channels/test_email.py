"""Email outcomes by kind, against a real SMTP listener and a fake ESP API on loopback."""

from __future__ import annotations

import json
import re
import ssl
import threading

import pytest
import trustme
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.utils import DNS_NAME

from channels.base import AMBIGUOUS, PERMANENT, TRANSIENT, Message
from channels.email import EmailProvider
from tests.channels.raw_receivers import one_shot_receiver, tls_then_garbage
from tests.support.http import ok_json
from tests.support.ports import free_port
from tests.support.smtp import SmtpInbox, SmtpServer


class PickyInbox(SmtpInbox):
    """Answers by recipient: unknown@ 550, full@ 452, reject@ 554 at DATA, busy@ 451 at DATA,
    drop@ hangs up after the message is sent."""

    async def handle_RCPT(self, server, session, envelope, address, options):  # noqa: N802
        if address.startswith("unknown@"):
            return "550 5.1.1 no such user"
        if address.startswith("full@"):
            return "452 4.2.2 mailbox full"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        to = envelope.rcpt_tos[0]
        if to.startswith("reject@"):
            return "554 5.7.1 message refused"
        if to.startswith("busy@"):
            return "451 4.3.0 try again later"
        if to.startswith("drop@"):
            server.transport.close()
            return "250 OK"
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def picky_smtp(settings):
    with SmtpServer(PickyInbox()) as server:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST = "127.0.0.1"
        settings.EMAIL_PORT = server.port
        yield server


def mail(delivery_id: int, to: str) -> Message:
    return Message(
        delivery_id=delivery_id,
        to=to,
        content={"subject": "Hi", "text": "Hello", "html": "<p>Hello</p>"},
    )


def provider(**options) -> EmailProvider:
    return EmailProvider(name="email", channel="email", **options)


def test_smtp_outcomes_by_kind(picky_smtp):
    outcomes = provider().send_batch(
        [
            mail(1, "ada@example.com"),
            mail(2, "unknown@example.com"),
            mail(3, "full@example.com"),
            mail(4, "reject@example.com"),
            mail(5, "busy@example.com"),
            mail(6, "bob@example.com"),
        ]
    )
    kinds = {o.delivery_id: o.error_kind for o in outcomes}
    assert kinds == {1: "", 2: PERMANENT, 3: TRANSIENT, 4: PERMANENT, 5: TRANSIENT, 6: ""}
    assert [str(m["To"]) for m in picky_smtp.inbox.messages] == [
        "ada@example.com",
        "bob@example.com",
    ]
    assert outcomes[0].provider_message_id == picky_smtp.inbox.messages[0]["Message-ID"]


def test_text_and_html_arrive_as_alternatives_with_boundaries_of_their_own(picky_smtp):
    tricky = "Hello\n--=_0123456789abcdef0123456789abcdef\n\u00e9t\u00e9"  # a boundary-like line
    batch = [
        Message(
            delivery_id=7,
            to="ada@example.com",
            content={"subject": "Hi", "text": tricky, "html": "<p>Hello</p>"},
        ),
        mail(8, "bob@example.com"),
    ]
    assert all(o.sent for o in provider().send_batch(batch))
    first, second = picky_smtp.inbox.wait_for(2)
    assert first.get_content_type() == "multipart/alternative"
    text = first.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert text.rstrip("\n") == tricky
    assert first.get_body(("html",)).get_content().strip() == "<p>Hello</p>"
    assert re.fullmatch(r"=_[\w-]{22}", first.get_boundary())
    # Short enough for the header to stay on one line.
    assert len(f"Content-Type: {first['Content-Type']}") <= 78
    assert first.get_boundary() != second.get_boundary()
    assert first["Message-ID"].endswith(f".d7@{DNS_NAME}>")


def test_a_disconnect_after_data_is_ambiguous_and_the_batch_goes_on(picky_smtp):
    outcomes = provider().send_batch([mail(1, "drop@example.com"), mail(2, "ada@example.com")])
    assert outcomes[0].error_kind == AMBIGUOUS
    assert outcomes[1].sent, outcomes[1]
    assert [str(m["To"]) for m in picky_smtp.inbox.messages] == ["ada@example.com"]


def test_connection_refused_is_transient_for_the_whole_batch(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = free_port()
    outcomes = provider().send_batch([mail(1, "a@example.com"), mail(2, "b@example.com")])
    assert [o.error_kind for o in outcomes] == [TRANSIENT, TRANSIENT]
    assert not any(o.reached_provider for o in outcomes)


def test_an_address_django_cannot_encode_is_permanent(picky_smtp):
    [outcome] = provider().send_batch([mail(1, "ada@example.com\nBcc: eve@example.com")])
    assert outcome.error_kind == PERMANENT
    assert picky_smtp.inbox.messages == []
    assert not outcome.reached_provider


class AnswerItCannotRead(BaseEmailBackend):
    """An ESP backend whose ValueError comes after its API call took the message."""

    def send_messages(self, email_messages):
        raise ValueError("Invalid status 'queud'")


@pytest.mark.parametrize(
    ("backend", "reached"),
    [
        ("django.core.mail.backends.locmem.EmailBackend", False),
        (f"{__name__}.AnswerItCannotRead", True),
    ],
)
def test_a_value_error_never_reached_the_provider_only_from_djangos_own_backends(backend, reached):
    [outcome] = provider(backend=backend).send_batch([mail(1, "ada@example.com\nBcc: e@x.com")])
    assert outcome.error_kind == PERMANENT
    assert outcome.reached_provider is reached


# --- anymail: a real ESP backend (Postmark) against a fake Postmark API on loopback ----------

POSTMARK = "anymail.backends.postmark.EmailBackend"


@pytest.fixture
def postmark(settings, http_server):
    settings.ANYMAIL = {"POSTMARK_SERVER_TOKEN": "pm-token", "POSTMARK_API_URL": http_server.url}
    return http_server


def postmark_ok(request):
    sent = request.json()
    return ok_json({"To": sent["To"], "MessageID": "pm-0001", "ErrorCode": 0, "Message": "OK"})


def test_anymail_sent_records_the_esp_message_id(postmark):
    postmark.responder = postmark_ok
    [outcome] = provider(backend=POSTMARK).send_batch([mail(1, "ada@example.com")])
    assert outcome.sent, outcome
    assert outcome.provider_message_id == "pm-0001"
    [request] = postmark.requests
    assert request.headers["X-Postmark-Server-Token"] == "pm-token"
    assert request.json()["To"] == "ada@example.com"


@pytest.mark.parametrize(
    "status, body, headers, kind, retry_after",
    [
        (500, {"ErrorCode": 1, "Message": "oops"}, {}, TRANSIENT, None),
        (503, {"ErrorCode": 1, "Message": "down"}, {"Retry-After": "20"}, TRANSIENT, 20.0),
        (429, {"ErrorCode": 1, "Message": "slow down"}, {"Retry-After": "3"}, TRANSIENT, 3.0),
        (401, {"ErrorCode": 10, "Message": "bad token"}, {}, PERMANENT, None),
        (
            422,
            {
                "ErrorCode": 406,
                "Message": "You tried to send to recipient(s) that have been "
                "marked as inactive.\n Found inactive addresses: ada@example.com.\n "
                "Inactive recipients are ones that have generated a hard bounce or a "
                "spam complaint.",
            },
            {},
            PERMANENT,
            None,
        ),
        (422, {"ErrorCode": 300, "Message": "Invalid email request"}, {}, PERMANENT, None),
    ],
)
def test_anymail_errors_map_to_kinds(postmark, status, body, headers, kind, retry_after):
    postmark.responder = lambda r: (
        status,
        {"Content-Type": "application/json", **headers},
        json.dumps(body).encode(),
    )
    [outcome] = provider(backend=POSTMARK).send_batch([mail(1, "ada@example.com")])
    assert (outcome.error_kind, outcome.retry_after) == (kind, retry_after), outcome
    assert outcome.reached_provider  # the ESP answered: the send rate was spent


def test_an_address_anymail_refuses_to_post_never_reached_the_esp(postmark):
    [outcome] = provider(backend=POSTMARK).send_batch([mail(1, "ada at example.com")])
    assert outcome.error_kind == PERMANENT, outcome
    assert not outcome.reached_provider
    assert postmark.requests == []


def test_an_esp_certificate_refused_sent_nothing_and_is_transient(settings):
    """Signed by a CA nobody trusts: the handshake fails before the request goes out."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(context)

    def handshake(conn, received):
        received.append(context.wrap_socket(conn, server_side=True).recv(1))

    with one_shot_receiver(handshake) as (port, received):
        settings.ANYMAIL = {
            "POSTMARK_SERVER_TOKEN": "pm-token",
            "POSTMARK_API_URL": f"https://127.0.0.1:{port}/",
        }
        [outcome] = provider(backend=POSTMARK).send_batch([mail(1, "ada@example.com")])
    assert received == []
    assert outcome.error_kind == TRANSIENT, outcome
    assert not outcome.reached_provider


def test_anymail_tls_broken_after_the_request_went_out_is_ambiguous(settings, monkeypatch):
    """Anymail reads the answer with its own session: the ESP may have the message."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    with (
        one_shot_receiver(tls_then_garbage(context)) as (port, received),
        ca.cert_pem.tempfile() as ca_path,
    ):
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_path)
        settings.ANYMAIL = {
            "POSTMARK_SERVER_TOKEN": "pm-token",
            "POSTMARK_API_URL": f"https://127.0.0.1:{port}/",
        }
        [outcome] = provider(backend=POSTMARK).send_batch([mail(1, "ada@example.com")])
    assert len(received) == 1
    assert outcome.error_kind == AMBIGUOUS, outcome
    assert outcome.reached_provider


def test_anymail_connection_refused_is_transient(settings):
    settings.ANYMAIL = {
        "POSTMARK_SERVER_TOKEN": "pm-token",
        "POSTMARK_API_URL": f"http://127.0.0.1:{free_port()}",
    }
    [outcome] = provider(backend=POSTMARK).send_batch([mail(1, "ada@example.com")])
    assert outcome.error_kind == TRANSIENT
    assert not outcome.reached_provider


def test_anymail_read_timeout_is_ambiguous(postmark, settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "REQUESTS_TIMEOUT": 0.3}
    gate = threading.Event()
    postmark.responder = lambda r: (gate.wait(5), postmark_ok(r))[1]
    try:
        [outcome] = provider(backend=POSTMARK).send_batch([mail(1, "ada@example.com")])
    finally:
        gate.set()
    assert outcome.error_kind == AMBIGUOUS
    assert outcome.reached_provider


def test_anymail_unreadable_success_is_ambiguous(postmark):
    postmark.responder = lambda r: (200, {"Content-Type": "application/json"}, b"<html>")
    [outcome] = provider(backend=POSTMARK).send_batch([mail(1, "ada@example.com")])
    assert outcome.error_kind == AMBIGUOUS


# Mailjet answers a message it could not send with a per-message error, and anymail reports
# the recipient as "failed" rather than raising.
MAILJET = "anymail.backends.mailjet.EmailBackend"


@pytest.fixture
def mailjet(settings, http_server):
    settings.ANYMAIL = {
        "MAILJET_API_KEY": "mj-key",
        "MAILJET_SECRET_KEY": "mj-secret",
        "MAILJET_API_URL": http_server.url,
    }
    return http_server


def test_an_esp_reporting_the_recipient_failed_is_not_sent(mailjet):
    error = {"ErrorCode": "mj-0004", "StatusCode": 400, "ErrorMessage": "Type mismatch."}
    body = {"Messages": [{"Status": "error", "Errors": [error]}]}
    mailjet.responder = lambda r: (
        400,
        {"Content-Type": "application/json"},
        json.dumps(body).encode(),
    )
    [outcome] = provider(backend=MAILJET).send_batch([mail(1, "ada@example.com")])
    assert outcome.error_kind == TRANSIENT, outcome
    assert "failed" in outcome.error
    assert len(mailjet.requests) == 1


def test_an_esp_reporting_the_recipient_sent_is_sent(mailjet):
    sent = {"Email": "ada@example.com", "MessageUUID": "u-1", "MessageID": 7001}
    mailjet.responder = lambda r: ok_json({"Messages": [{"Status": "success", "To": [sent]}]})
    [outcome] = provider(backend=MAILJET).send_batch([mail(1, "ada@example.com")])
    assert outcome.sent, outcome
    assert outcome.provider_message_id == "7001"
