"""Provider feedback: delivery reports, bounces, complaints and SMS keywords, applied once.

Webhooks arrive late, twice and out of order. Every report is recorded once per (provider,
message, event), and a report only ever moves a delivery forward along
sent -> delivered -> bounced -> complained, so a late "delivered" never undoes a bounce.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from notifications import clock
from notifications.models import Channel, Delivery, Recipient
from preferences.addresses import address_error, normalize
from preferences.models import ConsentLog, Suppression
from preferences.services import Actor, unsubscribe_all_marketing
from preferences.suppressions import suppression_add, suppression_remove

from .models import ProviderEvent
from .registry import provider_names

log = logging.getLogger(__name__)

PROGRESS = [
    Delivery.Status.SENT,
    Delivery.Status.DELIVERED,
    Delivery.Status.BOUNCED,
    Delivery.Status.COMPLAINED,
]

SMS_KEYWORD_ACTOR = Actor(source=ConsentLog.Source.SMS_KEYWORD, name="twilio")
# Twilio's standard opt-out, opt-in and help keywords (matched on the whole message).
STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT"})
START_WORDS = frozenset({"START", "YES", "UNSTOP"})
HELP_WORDS = frozenset({"HELP", "INFO"})

# Twilio error codes that mean the number will never take an SMS (unknown, landline).
SMS_UNREACHABLE_FOR_GOOD = frozenset({"30005", "30006"})


def first_time(provider: str, message_id: str, event: str, detail: dict | None = None) -> bool:
    """Record a report; False when the same one was seen before (a replay or a retry).

    Called inside the transaction that applies the report: if applying it fails, the record
    goes too, and the provider's retry is applied instead of skipped as a duplicate.
    """
    try:
        with transaction.atomic():
            ProviderEvent.objects.create(
                provider=provider, message_id=message_id, event=event, detail=detail or {}
            )
    except IntegrityError:
        return False
    return True


def delivery_advance(
    *, channel: str, message_id: str, status: str, error: str = ""
) -> Delivery | None:
    """Move the delivery a provider id names forward to ``status``; never backwards."""
    now = clock.now()
    deliveries = Delivery.objects.filter(
        provider__in=provider_names(channel), provider_message_id=message_id
    )
    earlier = PROGRESS[: PROGRESS.index(status)]
    changes: dict[str, Any] = {"status": status, "status_changed_at": now, "updated_at": now}
    if error:
        changes["error_message"] = error[:2000]
    # One conditional UPDATE: two reports racing each other cannot move it backwards.
    deliveries.filter(status__in=earlier).update(**changes)
    return deliveries.select_related("recipient").first()


# --- Email, through anymail's tracking webhooks -------------------------------------------


@transaction.atomic
def email_event(event, esp_name: str) -> None:
    """Apply one normalized anymail tracking event (connected to anymail's signal)."""
    message_id = event.message_id or ""
    if not message_id or not first_time(esp_name, message_id, event.event_type):
        return
    address = event.recipient or ""
    reason = event.reject_reason or ""
    if event.event_type == "delivered":
        delivery_advance(channel=Channel.EMAIL, message_id=message_id, status="delivered")
    elif event.event_type == "bounced" or (
        event.event_type in ("rejected", "failed") and reason in ("bounced", "invalid")
    ):
        delivery = delivery_advance(
            channel=Channel.EMAIL,
            message_id=message_id,
            status="bounced",
            error=event.description or event.mta_response or reason,
        )
        _suppress(
            address, delivery, Suppression.Reason.HARD_BOUNCE, Suppression.Scope.ALL, esp_name
        )
    elif event.event_type == "complained":
        delivery = delivery_advance(
            channel=Channel.EMAIL, message_id=message_id, status="complained"
        )
        # A spam report stops marketing to the address; its password resets still go.
        _suppress(
            address, delivery, Suppression.Reason.COMPLAINT, Suppression.Scope.MARKETING, esp_name
        )
    elif event.event_type == "unsubscribed":
        delivery = delivery_advance(channel=Channel.EMAIL, message_id=message_id, status="sent")
        _unsubscribe_marketing(delivery, esp_name)


def on_anymail_tracking(sender, event, esp_name, **kwargs) -> None:
    email_event(event, esp_name)


def _suppress(address: str, delivery, reason: str, scope: str, esp_name: str) -> None:
    recipient = delivery.recipient if delivery else None
    if not isinstance(address, str) or address_error(Channel.EMAIL, address):
        # Missing or not an address (a list, a NUL, 400 characters): the one we sent to.
        address = recipient.email if recipient else ""
    if not address:
        return
    suppression_add(
        channel=Channel.EMAIL,
        address=address,
        reason=reason,
        scope=scope,
        actor=Actor(source=ConsentLog.Source.PROVIDER, name=esp_name),
        recipient=recipient,
    )


def _unsubscribe_marketing(delivery, esp_name: str) -> None:
    # An unsubscribe is a preference, never a suppression: it must not block a password reset.
    if delivery is None:
        return
    actor = Actor(source=ConsentLog.Source.PROVIDER, name=esp_name)
    unsubscribe_all_marketing(recipient=delivery.recipient, actor=actor)


# --- SMS, through Twilio's status callbacks and inbound messages --------------------------


def _phone(value: str | None) -> str:
    """The E.164 number a report names, or "" when it names none."""
    return value if value and not address_error(Channel.SMS, value) else ""


TWILIO_STATUSES = {
    "delivered": Delivery.Status.DELIVERED,
    "undelivered": Delivery.Status.BOUNCED,
    "failed": Delivery.Status.BOUNCED,
}


@transaction.atomic
def sms_status(params: dict[str, str]) -> None:
    """Apply one Twilio status callback (MessageSid, MessageStatus, ErrorCode?)."""
    sid, twilio_status = params["MessageSid"], params["MessageStatus"]
    status = TWILIO_STATUSES.get(twilio_status)
    if status is None or not first_time("twilio", sid, twilio_status, params):
        return
    code = params.get("ErrorCode", "")
    error = f"Twilio error {code}" if code else ""
    delivery = delivery_advance(channel=Channel.SMS, message_id=sid, status=status, error=error)
    if code in SMS_UNREACHABLE_FOR_GOOD and delivery is not None:
        suppression_add(
            channel=Channel.SMS,
            address=_phone(params.get("To")) or delivery.recipient.phone,
            reason=Suppression.Reason.HARD_BOUNCE,
            actor=Actor(source=ConsentLog.Source.PROVIDER, name="twilio"),
            recipient=delivery.recipient,
        )


@transaction.atomic
def sms_keyword(*, sender: str, body: str, message_sid: str) -> str:
    """Act on STOP / START / HELP from a phone; returns the reply to send ("" for none)."""
    word = body.strip().upper()
    if word not in STOP_WORDS | START_WORDS | HELP_WORDS:
        return ""
    if word in HELP_WORDS:
        return settings.SMS_HELP_REPLY
    if not first_time("twilio", message_sid, "inbound"):
        return ""
    if not _phone(sender):  # a short code or an alphanumeric sender: no number to suppress
        return ""
    recipient = Recipient.objects.filter(phone=normalize(Channel.SMS, sender)).first()
    if word in STOP_WORDS:
        # Carriers treat STOP as stopping every message from the sender, not only marketing.
        suppression_add(
            channel=Channel.SMS,
            address=sender,
            reason=Suppression.Reason.SMS_STOP,
            actor=SMS_KEYWORD_ACTOR,
            recipient=recipient,
        )
        return settings.SMS_STOP_REPLY
    # START lifts what STOP did, never a number that bounced for good.
    suppression_remove(
        channel=Channel.SMS,
        address=sender,
        reason=Suppression.Reason.SMS_STOP,
        actor=SMS_KEYWORD_ACTOR,
        recipient=recipient,
    )
    return settings.SMS_START_REPLY
