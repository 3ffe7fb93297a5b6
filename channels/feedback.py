"""Provider feedback: delivery reports, bounces, complaints and SMS keywords, applied once.

Webhooks arrive late, twice and out of order. Every report is recorded once per (provider,
message, event), and a report only ever moves a delivery forward along
sent -> delivered -> bounced -> complained, so a late "delivered" never undoes a bounce.

They also arrive early: a provider can report on a message before the send batch that sent
it has recorded its message id. Such a report is parked and applied by ``apply_parked``
(beat, every PROVIDER_REPORT_RETRY_SECONDS) once the id is recorded; one that still names no
delivery after PROVIDER_REPORT_WAIT_SECONDS (a message sent by another system on the same
account) is applied as it would have been at once: to the address it names, if any.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, F, OuterRef, Q

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

TWILIO = "twilio"
SMS_KEYWORD_ACTOR = Actor(source=ConsentLog.Source.SMS_KEYWORD, name=TWILIO)
# Twilio's standard opt-out, opt-in and help keywords (matched on the whole message).
STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT"})
START_WORDS = frozenset({"START", "YES", "UNSTOP"})
HELP_WORDS = frozenset({"HELP", "INFO"})

# Twilio error codes that mean the number will never take an SMS (unknown, landline).
SMS_UNREACHABLE_FOR_GOOD = frozenset({"30005", "30006"})


def first_time(
    provider: str, message_id: str, event: str, detail: dict | None = None
) -> ProviderEvent | None:
    """Record a report; None when the same one was seen before (a replay or a retry).

    Called inside the transaction that applies the report: if applying it fails, the record
    goes too, and the provider's retry is applied instead of skipped as a duplicate.
    """
    try:
        with transaction.atomic():
            return ProviderEvent.objects.create(
                provider=provider, message_id=message_id, event=event, detail=detail or {}
            )
    except IntegrityError:
        return None


def _delivery(channel: str, message_id: str) -> Delivery | None:
    """The delivery a provider's message id names, once its send batch recorded the id."""
    return (
        Delivery.objects.filter(
            provider__in=provider_names(channel), provider_message_id=message_id
        )
        .select_related("recipient")
        .first()
    )


def _advance(delivery: Delivery | None, status: str, error: str = "") -> None:
    """Move the delivery forward to ``status``; never backwards."""
    if delivery is None:
        return
    now = clock.now()
    earlier = PROGRESS[: PROGRESS.index(status)]
    changes: dict[str, Any] = {"status": status, "status_changed_at": now, "updated_at": now}
    if error:
        changes["error_message"] = error[:2000]
    # One conditional UPDATE: two reports racing each other cannot move it backwards.
    Delivery.objects.filter(id=delivery.id, status__in=earlier).update(**changes)


def _park(report: ProviderEvent) -> None:
    report.parked = True
    report.save(update_fields=["parked"])


def apply_parked(limit: int = 500) -> int:
    """Apply parked reports whose delivery is now known, or that waited long enough."""
    give_up = clock.now() - timedelta(seconds=settings.PROVIDER_REPORT_WAIT_SECONDS)
    recorded = Delivery.objects.filter(
        provider__in=[*provider_names(Channel.EMAIL), *provider_names(Channel.SMS)],
        provider_message_id=OuterRef("message_id"),
    )
    with transaction.atomic():
        ready = list(
            ProviderEvent.objects.select_for_update(skip_locked=True)
            .filter(parked=True)
            .filter(Exists(recorded) | Q(received_at__lt=give_up))
            .order_by("failures", "received_at")[:limit]
        )
        applied = {report.id for report in ready if _apply_parked_report(report)}
        ProviderEvent.objects.filter(id__in=applied).update(parked=False)
        ProviderEvent.objects.filter(id__in={report.id for report in ready} - applied).update(
            failures=F("failures") + 1
        )
    return len(applied)


def _apply_parked_report(report: ProviderEvent) -> bool:
    """Apply one report in its own savepoint: one that cannot be applied holds back no other.

    It stays parked, counted in ``failures``, and comes after every report yet to fail.
    """
    try:
        with transaction.atomic():
            if report.provider == TWILIO:
                _apply_sms_status(report.detail, may_wait=False)
            else:
                _apply_email(report.provider, report.message_id, report.detail, may_wait=False)
    except SoftTimeLimitExceeded:
        raise  # the task ran out of time, not this report
    except Exception:  # noqa: BLE001 - stays parked and is tried again on later runs
        log.exception("parked %s report %s could not be applied", report.provider, report.id)
        return False
    return True


# --- Email, through anymail's tracking webhooks -------------------------------------------


EMAIL_EVENTS = frozenset(
    {"delivered", "bounced", "rejected", "failed", "complained", "unsubscribed"}
)


@transaction.atomic
def email_event(event, esp_name: str) -> None:
    """Apply one normalized anymail tracking event (connected to anymail's signal)."""
    message_id = event.message_id or ""
    if not message_id or event.event_type not in EMAIL_EVENTS:
        return
    said = {
        "event_type": event.event_type,
        "recipient": _text(event.recipient),
        "reason": _text(event.reject_reason),
        "error": _text(event.description) or _text(event.mta_response),
    }
    report = first_time(esp_name, message_id, event.event_type, said)
    if report is not None and not _apply_email(esp_name, message_id, said, may_wait=True):
        _park(report)


def _text(value: object) -> str:
    # What a report says is kept as JSON, which holds no NUL: anything but plain text (a
    # list, a NUL) is dropped, and a bounce's address falls back to the one we sent to.
    return value if isinstance(value, str) and "\x00" not in value else ""


def _apply_email(esp_name: str, message_id: str, said: dict, *, may_wait: bool) -> bool:
    """Apply what an email report said; False when it names no delivery yet and may wait."""
    delivery = _delivery(Channel.EMAIL, message_id)
    if delivery is None and may_wait:
        return False
    event_type, reason, address = said["event_type"], said["reason"], said["recipient"]
    if event_type == "delivered":
        _advance(delivery, Delivery.Status.DELIVERED)
    elif event_type == "bounced" or (
        event_type in ("rejected", "failed") and reason in ("bounced", "invalid")
    ):
        _advance(delivery, Delivery.Status.BOUNCED, error=said["error"] or reason)
        _suppress(
            address, delivery, Suppression.Reason.HARD_BOUNCE, Suppression.Scope.ALL, esp_name
        )
    elif event_type == "complained":
        _advance(delivery, Delivery.Status.COMPLAINED)
        # A spam report stops marketing to the address; its password resets still go.
        _suppress(
            address, delivery, Suppression.Reason.COMPLAINT, Suppression.Scope.MARKETING, esp_name
        )
    elif event_type == "unsubscribed":
        _unsubscribe_marketing(delivery, esp_name)
    return True


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
    if twilio_status not in TWILIO_STATUSES:
        return
    report = first_time(TWILIO, sid, twilio_status, params)
    if report is not None and not _apply_sms_status(params, may_wait=True):
        _park(report)


def _apply_sms_status(params: dict[str, str], *, may_wait: bool) -> bool:
    """Apply a status callback; False when it names no delivery yet and may wait."""
    delivery = _delivery(Channel.SMS, params["MessageSid"])
    if delivery is None and may_wait:
        return False
    code = params.get("ErrorCode", "")
    error = f"Twilio error {code}" if code else ""
    _advance(delivery, TWILIO_STATUSES[params["MessageStatus"]], error=error)
    if code in SMS_UNREACHABLE_FOR_GOOD and delivery is not None:
        suppression_add(
            channel=Channel.SMS,
            address=_phone(params.get("To")) or delivery.recipient.phone,
            reason=Suppression.Reason.HARD_BOUNCE,
            actor=Actor(source=ConsentLog.Source.PROVIDER, name=TWILIO),
            recipient=delivery.recipient,
        )
    return True


@transaction.atomic
def sms_keyword(*, sender: str, body: str, message_sid: str) -> str:
    """Act on STOP / START / HELP from a phone; returns the reply to send ("" for none)."""
    word = body.strip().upper()
    if word not in STOP_WORDS | START_WORDS | HELP_WORDS:
        return ""
    if word in HELP_WORDS:
        return settings.SMS_HELP_REPLY
    if not first_time(TWILIO, message_sid, "inbound"):
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
