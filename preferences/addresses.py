"""Normalised addresses and their keyed hashes (how suppressions are stored and matched)."""

from __future__ import annotations

import hashlib
import hmac
import re

from django.conf import settings


def normalize(channel: str, address: str) -> str:
    address = (address or "").strip()
    if channel == "email":
        return address.lower()
    if channel == "sms":
        digits = re.sub(r"[^\d]", "", address)
        return f"+{digits}" if digits else ""
    return address


def address_hash(channel: str, address: str) -> str:
    """HMAC-SHA256 of the normalised address, keyed so the list cannot be reversed by guessing."""
    value = f"{channel}:{normalize(channel, address)}".encode()
    return hmac.new(settings.SUPPRESSION_HASH_KEY.encode(), value, hashlib.sha256).hexdigest()


def recipient_address(recipient, channel: str) -> str:
    """The recipient's address on a channel ("" when it has none)."""
    if channel == "email":
        return recipient.email
    if channel == "sms":
        return recipient.phone
    if channel == "webhook":
        return recipient.webhook_url
    if channel == "in_app":
        return recipient.external_id
    return ""
