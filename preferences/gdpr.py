"""GDPR requests: export everything held on one recipient, and erase them for good.

Erasing keeps only what stops Clarion from contacting the person again: a marketing
suppression of each address as a keyed hash (never the address), and the consent log rows
(without IP or user agent) that prove the request was honoured.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import connection, transaction
from django.db.models import Q

from notifications import clock
from notifications.models import Delivery, FeedItem, Notification, Recipient

from .addresses import address_hash, normalize
from .models import ConsentLog, Preference, QuietHours, Suppression
from .services import Actor, consent_log, preferences_snapshot

ERASED_PREFIX = "erased-"


def erased_external_id(external_id: str) -> str:
    """The pseudonym an erased recipient keeps, so a repeated request finds it again."""
    key = settings.SUPPRESSION_HASH_KEY.encode()
    digest = hmac.new(key, f"external_id:{external_id}".encode(), hashlib.sha256).hexdigest()
    return f"{ERASED_PREFIX}{digest[:32]}"


def _pseudonym_for(recipient: Recipient) -> str:
    """The erased pseudonym for a recipient; an id erased before and used again since gets
    the same one with the row's own number, as external ids are unique."""
    pseudonym = erased_external_id(recipient.external_id)
    if Recipient.objects.filter(external_id=pseudonym).exclude(pk=recipient.pk).exists():
        return f"{pseudonym}-{recipient.pk}"
    return pseudonym


def recipient_lookup(external_id: str) -> Recipient | None:
    """A recipient by external id, else the one erased last that had it."""
    living = Recipient.objects.filter(external_id=external_id).first()
    if living is not None:
        return living
    pseudonym = erased_external_id(external_id)
    return (
        Recipient.objects.filter(
            Q(external_id=pseudonym) | Q(external_id__startswith=f"{pseudonym}-")
        )
        .order_by("-erased_at", "-pk")
        .first()
    )


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def recipient_export(*, recipient: Recipient, actor: Actor) -> dict[str, Any]:
    """Everything held on one recipient, as JSON-ready data; the export is logged."""
    own_hashes = _own_hashes(recipient)
    deliveries = Delivery.objects.filter(recipient=recipient).select_related("notification__type")
    export = {
        "recipient": {
            "external_id": recipient.external_id,
            "email": recipient.email,
            "phone": recipient.phone,
            "webhook_url": recipient.webhook_url,
            "locale": recipient.locale,
            "timezone": recipient.timezone,
            "attributes": recipient.attributes,
            "tags": recipient.tags,
            "created_at": _iso(recipient.created_at),
            "erased_at": _iso(recipient.erased_at),
        },
        "preferences": preferences_snapshot(recipient),
        "suppressions": [
            {
                "channel": s.channel,
                "scope": s.scope,
                "reason": s.reason,
                "created_at": _iso(s.created_at),
            }
            for s in Suppression.objects.filter(address_hash__in=own_hashes)
        ],
        "deliveries": [
            {
                "notification": str(d.notification_id),
                "type": d.notification.type.key,
                "data": d.notification.data,
                "channel": d.channel,
                "status": d.status,
                "skip_reason": d.skip_reason,
                "summary": d.summary,
                "error_message": d.error_message,
                "created_at": _iso(d.created_at),
                "sent_at": _iso(d.sent_at),
            }
            for d in deliveries.order_by("id")
        ],
        # Events naming them that no delivery came of yet (accepted, not routed).
        "events_waiting": [
            {
                "notification": str(n.id),
                "type": n.type.key,
                "data": n.data,
                "status": n.status,
                "created_at": _iso(n.created_at),
            }
            for n in Notification.objects.filter(_naming(recipient))
            .exclude(deliveries__recipient=recipient)
            .select_related("type")
            .distinct()
            .order_by("created_at")
        ],
        "feed": [
            {"title": f.title, "body": f.body, "link": f.link, "read_at": _iso(f.read_at)}
            for f in FeedItem.objects.filter(recipient=recipient).order_by("id")
        ],
        "consent_log": [
            {
                "source": c.source,
                "action": c.action,
                "actor": c.actor,
                "ip_address": c.ip_address,
                "user_agent": c.user_agent,
                "before": c.before,
                "after": c.after,
                "created_at": _iso(c.created_at),
            }
            for c in ConsentLog.objects.filter(recipient=recipient).order_by("id")
        ],
    }
    consent_log(recipient=recipient, actor=actor, action="export")
    return export


def _own_addresses(recipient: Recipient) -> list[tuple[str, str]]:
    pairs = [("email", recipient.email), ("sms", recipient.phone)]
    return [(channel, address) for channel, address in pairs if address]


def _own_hashes(recipient: Recipient) -> list[str]:
    return [address_hash(channel, address) for channel, address in _own_addresses(recipient)]


def _scrub(value: Any, needles: list[str]) -> Any:
    """The value with every string that mentions one of ``needles`` blanked, recursively."""
    if isinstance(value, str):
        lowered = value.lower()
        return "[erased]" if any(n in lowered for n in needles) else value
    if isinstance(value, dict):
        return {k: _scrub(v, needles) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, needles) for v in value]
    return value


def _needles(recipient: Recipient) -> list[str]:
    values = [recipient.email, recipient.phone, recipient.webhook_url]
    values += [normalize(channel, address) for channel, address in _own_addresses(recipient)]
    # Phone numbers are also written without the plus sign.
    values += [recipient.phone.lstrip("+")] if recipient.phone else []
    return sorted({v.lower() for v in values if v and len(v) >= 4})


def recipient_erase(*, recipient: Recipient, actor: Actor) -> Recipient:
    """Erase a recipient's personal data everywhere; idempotent."""
    if recipient.erased_at is not None:
        return recipient
    now = clock.now()
    needles = _needles(recipient)
    with transaction.atomic():
        for channel, address in _own_addresses(recipient):
            digest = address_hash(channel, address)
            Suppression.objects.filter(channel=channel, address_hash=digest).update(address="")
            # Never market to this address again, even if it comes back as someone new.
            Suppression.objects.get_or_create(
                channel=channel,
                address_hash=digest,
                scope=Suppression.Scope.MARKETING,
                defaults={"reason": Suppression.Reason.ERASED, "source": "erasure"},
            )
        pseudonym = _pseudonym_for(recipient)
        _erase_deliveries(recipient, now)
        _erase_notifications(recipient, needles, pseudonym)
        FeedItem.objects.filter(recipient=recipient).update(title="", body="", link="")
        Preference.objects.filter(recipient=recipient).delete()
        QuietHours.objects.filter(recipient=recipient).delete()
        _erase_logs(recipient, needles)
        _erase_provider_events(needles)
        recipient.external_id = pseudonym
        recipient.email = recipient.phone = recipient.webhook_url = ""
        recipient.attributes, recipient.tags = {}, []
        recipient.erased_at = now
        recipient.save()
        consent_log(recipient=recipient, actor=actor, action="erase", after={"erased": True})
    return recipient


def _erase_deliveries(recipient: Recipient, now) -> None:
    deliveries = Delivery.objects.filter(recipient=recipient)
    deliveries.filter(status__in=[*Delivery.OPEN_STATUSES, Delivery.Status.DIGESTED]).exclude(
        status=Delivery.Status.SENDING
    ).update(status=Delivery.Status.SKIPPED, skip_reason="erased", status_changed_at=now)
    deliveries.update(summary="", error_message="")


def _naming(recipient: Recipient) -> Q:
    """Notifications that name the person: delivered to them, or waiting to be routed."""
    named = Q(deliveries__recipient=recipient)
    if connection.features.supports_json_field_contains:
        return named | Q(recipient_ids__contains=[recipient.external_id])
    # SQLite (trial mode): events not routed yet are found by reading them.
    unrouted = Notification.objects.filter(status=Notification.Status.ACCEPTED)
    return named | Q(
        id__in=[
            n.id
            for n in unrouted.only("id", "recipient_ids")
            if recipient.external_id in n.recipient_ids
        ]
    )


def _erase_notifications(recipient: Recipient, needles: list[str], pseudonym: str) -> None:
    notifications = Notification.objects.filter(_naming(recipient)).distinct()
    changed = []
    for notification in notifications:
        if notification.recipient_ids == [recipient.external_id]:
            # Only this person's event: its data is theirs alone.
            notification.data = {}
        else:
            notification.data = _scrub(notification.data, needles)
        notification.recipient_ids = [
            pseudonym if i == recipient.external_id else i for i in notification.recipient_ids
        ]
        if notification.idempotency_key and _scrub(notification.idempotency_key, needles) != (
            notification.idempotency_key
        ):
            notification.idempotency_key = None
        changed.append(notification)
    Notification.objects.bulk_update(changed, ["data", "recipient_ids", "idempotency_key"])


def _erase_logs(recipient: Recipient, needles: list[str]) -> None:
    rows = list(ConsentLog.objects.filter(recipient=recipient))
    for row in rows:
        row.ip_address, row.user_agent = None, ""
        row.before, row.after = _scrub(row.before, needles), _scrub(row.after, needles)
        row.actor = _scrub(row.actor, needles)
    ConsentLog.objects.bulk_update(rows, ["ip_address", "user_agent", "before", "after", "actor"])
    # The admin's own history names objects by their str(), which may hold an address, and
    # names the recipient itself by its external id.
    mentions = Q(
        content_type=ContentType.objects.get_for_model(Recipient), object_id=str(recipient.pk)
    )
    for needle in needles:
        mentions |= Q(object_repr__icontains=needle) | Q(change_message__icontains=needle)
    for entry in LogEntry.objects.filter(mentions):
        entry.object_repr = "[erased]"
        entry.change_message = _scrub(entry.change_message, needles)
        entry.save(update_fields=["object_repr", "change_message"])


def _erase_provider_events(needles: list[str]) -> None:
    """Provider reports are kept for idempotency; what they said about the person is not."""
    from channels.models import ProviderEvent

    if not needles:
        return
    mentions = Q()
    for needle in needles:
        mentions |= Q(detail__icontains=needle)
    events = list(ProviderEvent.objects.filter(mentions))
    for event in events:
        event.detail = _scrub(event.detail, needles)
    ProviderEvent.objects.bulk_update(events, ["detail"])
