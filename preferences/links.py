"""Links and headers a message carries for its recipient (preference center, unsubscribe)."""

from __future__ import annotations

import functools
import re

from django.conf import settings
from django.urls import get_script_prefix, get_urlconf, reverse
from django.utils import translation
from django.utils.translation import gettext

from notifications.models import NotificationType, Recipient

from .tokens import PREFERENCES, UNSUBSCRIBE, make_token

PLACEHOLDER = "clarion-token"
OPT_OUT_KEYWORD = re.compile(r"\bSTOP\b")


def _absolute(path: str) -> str:
    return f"{settings.PUBLIC_BASE_URL}{path}"


def _token_url(name: str, token: str) -> str:
    """``reverse(name, args=[token])``, put together from the route around a placeholder.

    Reversing two links per message was a fifth of building it. Tokens are URL-safe base64
    and colons, which ``reverse`` leaves as they are (a test holds the two equal).
    """
    before, after = _around_token(name, get_urlconf(), get_script_prefix())
    return f"{before}{token}{after}"


@functools.lru_cache(maxsize=16)
def _around_token(name: str, urlconf, script_prefix: str) -> tuple[str, str]:
    before, _, after = reverse(name, urlconf=urlconf, args=[PLACEHOLDER]).partition(PLACEHOLDER)
    return before, after


def preferences_url(recipient: Recipient) -> str:
    token = make_token(recipient, PREFERENCES)
    return _absolute(_token_url("preferences:center", token))


def unsubscribe_url(recipient: Recipient, ntype: NotificationType) -> str:
    # The id, not the instance: no query per message.
    token = make_token(recipient, UNSUBSCRIBE, ntype.category_id)
    return _absolute(_token_url("preferences:unsubscribe", token))


def links_for(recipient: Recipient, ntype: NotificationType) -> dict[str, str]:
    """Plain data placed in the template context under ``links``.

    ``preferences_url`` is always there; ``unsubscribe_url`` only for marketing (empty for
    transactional mail, which has nothing to unsubscribe from); ``postal_address`` is the
    sender's address a marketing footer must print (CAN-SPAM).
    """
    return {
        "preferences_url": preferences_url(recipient),
        "unsubscribe_url": "" if ntype.is_transactional else unsubscribe_url(recipient, ntype),
        "postal_address": settings.SENDER_POSTAL_ADDRESS,
    }


def email_headers(unsubscribe_url: str) -> dict[str, str]:
    """List-Unsubscribe and List-Unsubscribe-Post for marketing mail (RFC 2369, RFC 8058).

    Given the message's ``links["unsubscribe_url"]`` (signed once per message, not twice):
    empty for transactional mail, which gets no headers.
    """
    if not unsubscribe_url:
        return {}
    targets = [f"<{unsubscribe_url}>"]
    if settings.UNSUBSCRIBE_MAILTO:
        targets.append(f"<mailto:{settings.UNSUBSCRIBE_MAILTO}?subject=unsubscribe>")
    return {
        "List-Unsubscribe": ", ".join(targets),
        # RFC 8058 section 3.1: this exact value; the HTTPS URI takes the one-click POST.
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


def with_sms_opt_out(text: str, recipient: Recipient, ntype: NotificationType) -> str:
    """Marketing SMS ends with how to opt out (carriers and the TCPA expect it)."""
    # A template that already says how (the keyword as a word, not inside "NONSTOP").
    if ntype.is_transactional or OPT_OUT_KEYWORD.search(text):
        return text
    with translation.override(recipient.locale or settings.LANGUAGE_CODE):
        wording = gettext("Reply STOP to opt out.")
    return f"{text.rstrip()} {wording}"


def sample_links() -> dict[str, str]:
    """Placeholder links of the same shape, for previews and test renders."""
    return {
        "preferences_url": _absolute("/preferences/sample-token/"),
        "unsubscribe_url": _absolute("/unsubscribe/sample-token/"),
        "postal_address": settings.SENDER_POSTAL_ADDRESS,
    }
