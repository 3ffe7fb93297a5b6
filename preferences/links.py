"""Links and headers a message carries for its recipient (preference center, unsubscribe)."""

from __future__ import annotations

from notifications.models import NotificationType, Recipient


def links_for(recipient: Recipient, ntype: NotificationType) -> dict[str, str]:
    """Plain URLs placed in the template context under ``links``."""
    return {}


def email_headers(recipient: Recipient, ntype: NotificationType) -> dict[str, str]:
    """Extra email headers (List-Unsubscribe for marketing, RFC 8058)."""
    return {}
