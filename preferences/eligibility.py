"""Who may get what on which channel: the one place that decides.

Routing plans deliveries with ``decide`` and writes nothing; sending calls it again when a
batch is claimed, so an unsubscribe stops what is already queued, deferred or retrying. All
lookups are done for a whole batch of recipients at once (one query each).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from notifications.models import NotificationType, Recipient

from .addresses import address_hash, recipient_address
from .models import Preference, Suppression


class Skip:
    """Reasons a delivery is skipped, recorded on the Delivery for support staff."""

    NO_ADDRESS = "no_address"
    SUPPRESSED = "suppressed"
    OPTED_OUT_TYPE = "opted_out_type"
    OPTED_OUT_CATEGORY = "opted_out_category"
    OPTED_OUT_CHANNEL = "opted_out_channel"
    OPTED_OUT_MARKETING = "opted_out_marketing"
    CAPPED = "capped"
    ERASED = "erased"


@dataclass(frozen=True)
class Decision:
    recipient_id: int
    channel: str
    skip_reason: str = ""
    defer_until: datetime | None = None

    @property
    def allowed(self) -> bool:
        return not self.skip_reason


def decide(
    ntype: NotificationType,
    recipients: Iterable[Recipient],
    channels: Iterable[str],
    now: datetime,
) -> list[Decision]:
    """One decision per (recipient, channel), in recipient order then channel order."""
    recipients = list(recipients)
    channels = list(channels)
    suppressed = _suppressed_hashes(recipients, channels)
    preferences = {} if ntype.is_transactional else _preferences(ntype, recipients)
    decisions = []
    for recipient in recipients:
        for channel in channels:
            reason = _skip_reason(ntype, recipient, channel, suppressed, preferences)
            decisions.append(Decision(recipient.id, channel, reason))
    return decisions


def _skip_reason(ntype, recipient, channel, suppressed, preferences) -> str:
    if recipient.erased_at is not None:
        return Skip.ERASED
    address = recipient_address(recipient, channel)
    if not address:
        return Skip.NO_ADDRESS
    digest = address_hash(channel, address)
    if (channel, digest, Suppression.Scope.ALL) in suppressed:
        return Skip.SUPPRESSED
    if ntype.is_transactional:
        # Password resets and security alerts ignore marketing opt-outs, never suppressions.
        return ""
    if (channel, digest, Suppression.Scope.MARKETING) in suppressed:
        return Skip.SUPPRESSED
    return _opt_out_reason(preferences.get(recipient.id, {}), ntype, channel)


# Most specific scope first: (category?, type?, channel?) -> the reason it gives.
def _opt_out_reason(prefs: dict, ntype: NotificationType, channel: str) -> str:
    scopes = (
        ((None, ntype.id, channel), Skip.OPTED_OUT_TYPE),
        ((None, ntype.id, ""), Skip.OPTED_OUT_TYPE),
        ((ntype.category_id, None, channel), Skip.OPTED_OUT_CATEGORY),
        ((ntype.category_id, None, ""), Skip.OPTED_OUT_CATEGORY),
        ((None, None, channel), Skip.OPTED_OUT_CHANNEL),
        ((None, None, ""), Skip.OPTED_OUT_MARKETING),
    )
    for scope, reason in scopes:
        pref = prefs.get(scope)
        if pref is not None:
            return "" if pref.enabled and pref.frequency != "off" else reason
    return ""


def _preferences(ntype: NotificationType, recipients: list[Recipient]) -> dict:
    by_recipient: dict[int, dict] = {}
    rows = Preference.objects.filter(recipient__in=[r.id for r in recipients]).filter(
        _scopes_of(ntype)
    )
    for pref in rows:
        scope = (pref.category_id, pref.notification_type_id, pref.channel)
        by_recipient.setdefault(pref.recipient_id, {})[scope] = pref
    return by_recipient


def _scopes_of(ntype: NotificationType):
    from django.db.models import Q

    return (
        Q(notification_type_id=ntype.id)
        | Q(category_id=ntype.category_id)
        | Q(category__isnull=True, notification_type__isnull=True)
    )


def _suppressed_hashes(recipients: list[Recipient], channels: list[str]) -> set[tuple]:
    hashes = {
        address_hash(c, recipient_address(r, c))
        for r in recipients
        for c in channels
        if recipient_address(r, c)
    }
    if not hashes:
        return set()
    rows = Suppression.objects.filter(address_hash__in=hashes).values_list(
        "channel", "address_hash", "scope"
    )
    return set(rows)
