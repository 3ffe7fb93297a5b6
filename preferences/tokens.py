"""Signed, salted tokens in message links: who they are for and what they may change."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from django.conf import settings
from django.core import signing

from notifications.models import Category, Recipient

PREFERENCES = "preferences"
UNSUBSCRIBE = "unsubscribe"
SCOPES = (PREFERENCES, UNSUBSCRIBE)


class BadToken(Exception):
    """A token that is altered, for another scope, for nobody, or too old."""

    def __init__(self, reason: str):
        super().__init__(reason)
        # "invalid" (altered, wrong scope, unknown recipient) or "expired".
        self.reason = reason


@dataclass(frozen=True)
class Grant:
    recipient: Recipient
    scope: str
    category: Category | None = None


def _salt(scope: str) -> str:
    # A salt per scope: a preference-center token can never be replayed as an unsubscribe.
    return f"clarion.preferences.{scope}"


def make_token(recipient: Recipient, scope: str, category: Category | int | None = None) -> str:
    """A token for one recipient and scope (an unsubscribe one names a category, or its id)."""
    if scope not in SCOPES:
        raise ValueError(f"unknown token scope {scope!r}")
    payload: dict = {"r": recipient.pk}
    if category is not None:
        payload["c"] = category if isinstance(category, int) else category.pk
    # What signing.dumps(payload, salt=...) writes (a payload this small never compresses),
    # without building a signer per link: two links per marketing email.
    return _signer(scope, settings.SECRET_KEY).sign_object(payload)


@functools.lru_cache(maxsize=8)
def _signer(scope: str, secret_key: str) -> signing.TimestampSigner:
    # Keyed by the secret too: one rotated (or overridden in a test) signs at once.
    return signing.TimestampSigner(key=secret_key, salt=_salt(scope))


def read_token(token: str, scope: str) -> Grant:
    """The grant a token carries; raises BadToken and never changes anything."""
    try:
        payload = signing.loads(
            token, salt=_salt(scope), max_age=settings.PREFERENCE_TOKEN_MAX_AGE_SECONDS
        )
    except signing.SignatureExpired as exc:
        raise BadToken("expired") from exc
    except signing.BadSignature as exc:
        raise BadToken("invalid") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("r"), int):
        raise BadToken("invalid")
    recipient = Recipient.objects.filter(pk=payload["r"], erased_at__isnull=True).first()
    if recipient is None:
        raise BadToken("invalid")
    category = None
    if scope == UNSUBSCRIBE and "c" in payload:
        category = Category.objects.filter(pk=payload["c"]).first()
        if category is None:  # gone since: never read it as "all marketing"
            raise BadToken("invalid")
    return Grant(recipient=recipient, scope=scope, category=category)
