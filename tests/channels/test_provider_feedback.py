"""Provider webhooks: delivery reports, bounces, complaints, SMS STOP/START/HELP.

Requests are shaped as Postmark (through anymail's own tracking view) and Twilio send them.
"""

from __future__ import annotations

import base64
import json

import pytest
from django.test import Client
from twilio.request_validator import RequestValidator

from channels.models import ProviderEvent
from notifications import clock
from notifications.models import Delivery
from preferences.addresses import address_hash
from preferences.eligibility import Skip, decide
from preferences.models import ConsentLog, Preference, Suppression
from tests.factories import NotificationFactory, NotificationTypeFactory, RecipientFactory

pytestmark = pytest.mark.django_db

AUTH_TOKEN = "test-twilio-auth-token"
BASE = "https://clarion.example.com"
POSTMARK = "/webhooks/anymail/postmark/tracking/"
TWILIO_STATUS = "/webhooks/twilio/status/"
TWILIO_INBOUND = "/webhooks/twilio/inbound/"


@pytest.fixture(autouse=True)
def provider_settings(settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": "hook:s3cret"}
    settings.EMAIL_TRACKING_ESP = "postmark"
    settings.TWILIO_AUTH_TOKEN = AUTH_TOKEN
    settings.PUBLIC_BASE_URL = BASE


def sent_delivery(channel: str, message_id: str, **recipient) -> Delivery:
    ntype = NotificationTypeFactory(channels=[channel], traffic="marketing")
    return Delivery.objects.create(
        notification=NotificationFactory(type=ntype),
        recipient=RecipientFactory(**recipient),
        channel=channel,
        traffic="marketing",
        provider=channel,
        status=Delivery.Status.SENT,
        provider_message_id=message_id,
    )


def postmark(payload: dict, auth: str = "hook:s3cret"):
    credentials = base64.b64encode(auth.encode()).decode()
    return Client().post(
        POSTMARK,
        data=json.dumps(payload),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Basic {credentials}",
    )


def delivered(message_id: str, email: str) -> dict:
    return {
        "RecordType": "Delivery",
        "MessageID": message_id,
        "Recipient": email,
        "DeliveredAt": "2026-11-25T08:00:00Z",
        "Details": "250 OK",
    }


def bounced(message_id: str, email: str, kind: str = "HardBounce") -> dict:
    return {
        "RecordType": "Bounce",
        "ID": 4242,
        "Type": kind,
        "MessageID": message_id,
        "Email": email,
        "BouncedAt": "2026-11-25T08:01:00Z",
        "Description": "The server was unable to deliver your message",
        "Details": "550 5.1.1 user unknown",
    }


def twilio(path: str, params: dict, token: str = AUTH_TOKEN):
    signature = RequestValidator(token).compute_signature(BASE + path, params)
    return Client().post(path, data=params, HTTP_X_TWILIO_SIGNATURE=signature)


def suppressed(channel: str, recipient) -> bool:
    ntype = NotificationTypeFactory(channels=[channel], traffic="transactional")
    return decide(ntype, [recipient], [channel], clock.now())[0].skip_reason == Skip.SUPPRESSED


# --- email ---------------------------------------------------------------------------------


def test_a_delivery_report_marks_the_email_delivered():
    delivery = sent_delivery("email", "pm-1", email="ada@example.com")

    response = postmark(delivered("pm-1", "ada@example.com"))

    assert response.status_code == 200
    delivery.refresh_from_db()
    assert delivery.status == "delivered"


def test_a_hard_bounce_marks_it_bounced_and_suppresses_the_address_for_all_mail():
    delivery = sent_delivery("email", "pm-2", email="gone@example.com")

    postmark(bounced("pm-2", "Gone@Example.com"))

    delivery.refresh_from_db()
    assert delivery.status == "bounced"
    assert "unable to deliver" in delivery.error_message
    suppression = Suppression.objects.get(channel="email")
    assert (suppression.scope, suppression.reason) == ("all", "hard_bounce")
    assert suppressed("email", delivery.recipient)
    assert ConsentLog.objects.filter(source="provider", action="suppress").count() == 1


def test_a_complaint_stops_marketing_but_not_transactional_mail():
    delivery = sent_delivery("email", "pm-3", email="angry@example.com")

    postmark(
        {**bounced("pm-3", "angry@example.com", "SpamComplaint"), "RecordType": "SpamComplaint"}
    )

    delivery.refresh_from_db()
    assert delivery.status == "complained"
    assert Suppression.objects.get().scope == "marketing"
    assert not suppressed("email", delivery.recipient)  # a password reset still goes


def test_duplicate_and_out_of_order_reports_leave_the_right_final_status():
    delivery = sent_delivery("email", "pm-4", email="ada@example.com")

    postmark(bounced("pm-4", "ada@example.com"))
    postmark(bounced("pm-4", "ada@example.com"))
    postmark(delivered("pm-4", "ada@example.com"))  # late, and behind the bounce

    delivery.refresh_from_db()
    assert delivery.status == "bounced"
    assert Suppression.objects.count() == 1
    assert ConsentLog.objects.filter(action="suppress").count() == 1


def test_an_esp_unsubscribe_is_a_marketing_preference_not_a_suppression():
    delivery = sent_delivery("email", "pm-5", email="bye@example.com")
    payload = {
        "RecordType": "SubscriptionChange",
        "MessageID": "pm-5",
        "Recipient": "bye@example.com",
        "SuppressSending": True,
        "SuppressionReason": "ManualSuppression",
        "ChangedAt": "2026-11-25T08:02:00Z",
    }

    postmark(payload)

    assert not Suppression.objects.exists()
    assert Preference.objects.filter(recipient=delivery.recipient, enabled=False).exists()
    assert ConsentLog.objects.filter(source="provider", recipient=delivery.recipient).exists()


def test_email_webhooks_without_the_secret_are_refused_and_change_nothing():
    delivery = sent_delivery("email", "pm-6", email="ada@example.com")

    response = postmark(bounced("pm-6", "ada@example.com"), auth="hook:wrong")

    assert response.status_code == 400
    delivery.refresh_from_db()
    assert delivery.status == "sent"
    assert not Suppression.objects.exists()


# --- SMS status callbacks --------------------------------------------------------------------


def test_a_twilio_status_callback_marks_the_sms_delivered():
    delivery = sent_delivery("sms", "SM1", phone="+15550000001")

    response = twilio(TWILIO_STATUS, {"MessageSid": "SM1", "MessageStatus": "delivered"})

    assert response.status_code == 204
    delivery.refresh_from_db()
    assert delivery.status == "delivered"


def test_a_twilio_callback_with_a_repeated_field_is_verified_on_every_value():
    from django.http import QueryDict

    delivery = sent_delivery("sms", "SM7", phone="+15550000007")
    params = {"MessageSid": "SM7", "MessageStatus": "delivered", "ErrorHint": ["a", "b"]}
    signed = QueryDict(mutable=True)
    for name, value in params.items():
        signed.setlist(name, value if isinstance(value, list) else [value])
    signature = RequestValidator(AUTH_TOKEN).compute_signature(BASE + TWILIO_STATUS, signed)

    response = Client().post(TWILIO_STATUS, data=params, HTTP_X_TWILIO_SIGNATURE=signature)

    assert response.status_code == 204
    delivery.refresh_from_db()
    assert delivery.status == "delivered"


def test_an_invalid_twilio_signature_gets_403_and_changes_nothing():
    delivery = sent_delivery("sms", "SM2", phone="+15550000002")

    response = twilio(
        TWILIO_STATUS, {"MessageSid": "SM2", "MessageStatus": "delivered"}, token="forged"
    )

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "invalid_signature"
    delivery.refresh_from_db()
    assert delivery.status == "sent"


def test_a_replayed_or_late_twilio_callback_changes_nothing_more():
    delivery = sent_delivery("sms", "SM3", phone="+15550000003")
    undelivered = {"MessageSid": "SM3", "MessageStatus": "undelivered", "ErrorCode": "30005"}

    twilio(TWILIO_STATUS, undelivered)
    twilio(TWILIO_STATUS, undelivered)
    twilio(TWILIO_STATUS, {"MessageSid": "SM3", "MessageStatus": "delivered"})

    delivery.refresh_from_db()
    assert (delivery.status, delivery.error_message) == ("bounced", "Twilio error 30005")
    assert Suppression.objects.filter(channel="sms", reason="hard_bounce").count() == 1


def test_a_status_callback_missing_its_fields_gets_400():
    response = twilio(TWILIO_STATUS, {"MessageSid": "SM4"})

    assert response.status_code == 400
    assert "MessageStatus" in response.json()["error"]["message"]


# --- SMS keywords ----------------------------------------------------------------------------


def test_stop_then_start_from_the_same_number():
    person = RecipientFactory(phone="+15550000009")
    stop = {"MessageSid": "SMin1", "From": "+1 (555) 000-0009", "Body": " stop "}

    reply = twilio(TWILIO_INBOUND, stop)

    assert b"You are unsubscribed" in reply.content
    assert reply["Content-Type"].startswith("text/xml")
    assert suppressed("sms", person)

    reply = twilio(TWILIO_INBOUND, {"MessageSid": "SMin2", "From": "+15550000009", "Body": "START"})

    assert b"subscribed again" in reply.content
    assert not suppressed("sms", person)
    actions = list(
        ConsentLog.objects.filter(recipient=person, source="sms_keyword")
        .order_by("id")
        .values_list("action", flat=True)
    )
    assert actions == ["suppress", "unsuppress"]


def test_start_never_lifts_a_number_that_bounced_for_good():
    person = RecipientFactory(phone="+15550000010")
    Suppression.objects.create(
        channel="sms",
        address_hash=address_hash("sms", "+15550000010"),
        reason="hard_bounce",
    )

    twilio(TWILIO_INBOUND, {"MessageSid": "SMin3", "From": "+15550000010", "Body": "start"})

    assert suppressed("sms", person)


def test_help_is_answered_and_other_words_are_left_alone():
    help_reply = twilio(TWILIO_INBOUND, {"MessageSid": "SMin4", "From": "+1555", "Body": "help"})
    chat = twilio(TWILIO_INBOUND, {"MessageSid": "SMin5", "From": "+1555", "Body": "stop it"})

    assert b"Reply STOP" in help_reply.content
    assert b"<Message>" not in chat.content
    assert not Suppression.objects.exists()


def test_a_replayed_stop_is_recorded_once():
    stop = {"MessageSid": "SMin6", "From": "+15550000011", "Body": "STOP"}

    twilio(TWILIO_INBOUND, stop)
    twilio(TWILIO_INBOUND, stop)

    assert Suppression.objects.count() == 1
    assert ConsentLog.objects.filter(action="suppress").count() == 1


# --- what a webhook may not do -------------------------------------------------------------


def test_without_a_secret_email_tracking_is_refused_and_changes_nothing(settings):
    settings.ANYMAIL = {}  # anymail alone would only warn, and take the forged bounce
    victim = sent_delivery("email", "pm-f", email="victim@example.com")
    response = Client().post(
        POSTMARK,
        data=json.dumps(bounced("pm-f", victim.recipient.email)),
        content_type="application/json",
    )
    assert response.status_code == 403
    victim.refresh_from_db()
    assert victim.status == "sent" and not suppressed("email", victim.recipient)


@pytest.mark.parametrize("esp", ["mailgun", "amazon_ses", "sendgrid", "no-such-esp"])
def test_only_the_esp_in_use_has_a_tracking_webhook(esp):
    response = Client().post(
        f"/webhooks/anymail/{esp}/tracking/", data="{}", content_type="application/json"
    )
    assert response.status_code == 404


def test_a_report_that_fails_midway_is_applied_when_the_provider_retries(monkeypatch):
    from channels import feedback

    delivery = sent_delivery("email", "pm-r", email="gone@example.com")
    real = feedback.suppression_add
    calls = []

    def flaky(**kwargs):
        calls.append(kwargs)
        if len(calls) == 1:
            raise RuntimeError("the database went away")
        return real(**kwargs)

    monkeypatch.setattr(feedback, "suppression_add", flaky)
    with pytest.raises(RuntimeError):
        postmark(bounced("pm-r", "gone@example.com"))
    delivery.refresh_from_db()
    assert delivery.status == "sent"  # nothing of the failed attempt stayed

    assert postmark(bounced("pm-r", "gone@example.com")).status_code == 200
    delivery.refresh_from_db()
    assert delivery.status == "bounced" and suppressed("email", delivery.recipient)


@pytest.mark.parametrize("reported", [["x@y.com"], "gone\x00@example.com", "a" * 400 + "@x.com"])
def test_a_bounce_naming_no_real_address_suppresses_the_one_we_sent_to(reported):
    delivery = sent_delivery("email", "pm-b", email="gone@example.com")
    assert postmark(bounced("pm-b", reported)).status_code == 200
    assert suppressed("email", delivery.recipient)


def test_a_twilio_report_with_no_real_message_id_is_refused():
    response = twilio(TWILIO_STATUS, {"MessageSid": "SM" + "1" * 300, "MessageStatus": "delivered"})
    assert response.status_code == 400


# --- reports that arrive before their send batch recorded the message id --------------------


def sending_delivery(channel: str, **recipient) -> Delivery:
    delivery = sent_delivery(channel, "", **recipient)
    Delivery.objects.filter(id=delivery.id).update(status=Delivery.Status.SENDING)
    return delivery


def batch_records(delivery: Delivery, message_id: str) -> None:
    Delivery.objects.filter(id=delivery.id).update(
        status=Delivery.Status.SENT, provider_message_id=message_id
    )


def test_an_sms_report_ahead_of_its_batch_is_applied_once_the_batch_records_it():
    from channels.feedback import apply_parked

    delivery = sending_delivery("sms", phone="+15550000009")
    undelivered = {"MessageSid": "SM9", "MessageStatus": "undelivered", "ErrorCode": "30005"}

    assert twilio(TWILIO_STATUS, undelivered).status_code == 204
    assert apply_parked() == 0  # its message id is not recorded yet: it keeps waiting
    batch_records(delivery, "SM9")
    assert apply_parked() == 1

    delivery.refresh_from_db()
    assert (delivery.status, delivery.error_message) == ("bounced", "Twilio error 30005")
    assert suppressed("sms", delivery.recipient)
    assert apply_parked() == 0  # applied once


def test_an_email_bounce_ahead_of_its_batch_is_applied_once_the_batch_records_it():
    from channels.feedback import apply_parked

    delivery = sending_delivery("email", email="early@example.com")

    assert postmark(bounced("pm-early", "early@example.com")).status_code == 200
    assert postmark(bounced("pm-early", "early@example.com")).status_code == 200  # a retry
    batch_records(delivery, "pm-early")
    apply_parked()

    delivery.refresh_from_db()
    assert delivery.status == "bounced"
    assert "unable to deliver" in delivery.error_message
    assert ConsentLog.objects.filter(source="provider", action="suppress").count() == 1


def test_a_report_on_a_message_clarion_never_sent_is_applied_to_its_address_after_the_wait(
    settings,
):
    from channels.feedback import apply_parked

    postmark(bounced("pm-elsewhere", "someone@example.com"))
    assert apply_parked() == 0
    assert not Suppression.objects.exists()

    clock.advance(settings.PROVIDER_REPORT_WAIT_SECONDS + 1)
    try:
        assert apply_parked() == 1
    finally:
        clock.reset()

    assert Suppression.objects.get().reason == "hard_bounce"


def two_parked_bounces_the_first_failing(monkeypatch) -> tuple[Delivery, Delivery]:
    """Two bounces parked ahead of their batch, then recorded; applying the first raises."""
    from channels import feedback

    first = sending_delivery("email", email="first@example.com")
    second = sending_delivery("email", email="second@example.com")
    postmark(bounced("pm-first", "first@example.com"))
    postmark(bounced("pm-second", "second@example.com"))
    batch_records(first, "pm-first")
    batch_records(second, "pm-second")
    apply_email = feedback._apply_email

    def fails_on_first(esp_name, message_id, said, *, may_wait):
        if message_id == "pm-first":
            raise ValueError("a report nobody foresaw")
        return apply_email(esp_name, message_id, said, may_wait=may_wait)

    monkeypatch.setattr(feedback, "_apply_email", fails_on_first)
    return first, second


def test_a_parked_report_that_cannot_be_applied_holds_back_no_other(monkeypatch):
    from channels import feedback

    first, second = two_parked_bounces_the_first_failing(monkeypatch)
    assert feedback.apply_parked() == 1

    second.refresh_from_db()
    first.refresh_from_db()
    assert (first.status, second.status) == ("sent", "bounced")
    # Still parked, with nothing of it half applied: a later run tries it again.
    monkeypatch.undo()
    assert feedback.apply_parked() == 1
    first.refresh_from_db()
    assert first.status == "bounced"


def test_reports_that_keep_failing_go_after_the_others(monkeypatch):
    from channels import feedback

    _, second = two_parked_bounces_the_first_failing(monkeypatch)
    # One report a run: the older one fails first, then waits behind the one not yet tried.
    assert [feedback.apply_parked(limit=1) for _ in range(3)] == [0, 1, 0]

    second.refresh_from_db()
    assert second.status == "bounced"
    assert ProviderEvent.objects.get(message_id="pm-first", parked=True).failures == 2
