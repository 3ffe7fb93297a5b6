"""Building a text email's MIME tree as Django's ``EmailMessage.message()`` does, sooner.

For an email of text parts only (a body and text alternatives, no attachments, UTF-8),
Django's method spends most of its time where the result is known in advance:

- each ``SafeMIMEText`` writes its Content-Type with the charset, then sets the charset
  again, parsing that header back and writing it anew (half of building the part);
- every header passes through a check that, for a short printable ASCII value, returns it
  unchanged, the Subject after a round through ``email.header.Header``.

``text_message`` builds the same tree (same classes, headers, order and payloads: a test
compares the bytes with Django's over many random emails) and hands anything else back to
Django: attachments, another charset, non-text alternatives, values that are not ``str``.
"""

from __future__ import annotations

from email.message import Message

import django
from django.conf import settings
from django.core.mail import EmailMessage
from django.core.mail.message import (
    SafeMIMEMultipart,
    SafeMIMEText,
    forbid_multi_line_headers,
    formatdate,
    make_msgid,
)
from django.core.mail.utils import DNS_NAME

from .mime import AS_IS_WHEN_SHORT

# Django 6 builds messages under the modern email policy, with other classes: left to it.
SUPPORTED = django.VERSION < (6, 0)
CHARSET = "utf-8"
# Django sets these headers itself, from the email's fields, before the extra headers.
OWN_HEADERS = {"from", "to", "cc", "reply-to"}
# A printable ASCII value up to this long comes out of Django's header check as it went in
# (the Subject's round through Header folds past 78 characters).
AS_IS_LENGTH = 76


class TextPart(SafeMIMEText):
    """``SafeMIMEText(text, subtype, "utf-8")``, without parsing back its own Content-Type.

    Django's ``set_payload`` picks the encoding (quoted-printable when a line is too long
    for SMTP) and the standard library writes MIME-Version, Content-Type and
    Content-Transfer-Encoding as it sets the charset; the headers are then put in the order
    MIMEText gives them, with the subtype.
    """

    def __init__(self, text: str, subtype: str):
        Message.__init__(self)
        self.encoding = CHARSET
        self.set_payload(text, CHARSET)
        encoding = self["Content-Transfer-Encoding"]
        del self["MIME-Version"]
        del self["Content-Transfer-Encoding"]
        self.replace_header("Content-Type", f'text/{subtype}; charset="{CHARSET}"')
        self["MIME-Version"] = "1.0"
        self["Content-Transfer-Encoding"] = encoding
        self.policy = AS_IS_WHEN_SHORT


def text_message(email: EmailMessage) -> Message | None:
    """``email.message()`` for an email of UTF-8 text parts; None for any other email."""
    if not _supported(email):
        return None
    msg: Message = TextPart(email.body, email.content_subtype)
    alternatives = getattr(email, "alternatives", [])
    if alternatives:
        body, msg = msg, SafeMIMEMultipart(_subtype=email.alternative_subtype, encoding=CHARSET)
        msg.policy = AS_IS_WHEN_SHORT
        if email.body:
            msg.attach(body)
        for content, mimetype in alternatives:
            msg.attach(TextPart(content, mimetype.split("/", 1)[1]))
    extra = email.extra_headers
    _set(msg, "Subject", email.subject)
    _set(msg, "From", extra.get("From", email.from_email))
    for name, values in (("To", email.to), ("Cc", email.cc), ("Reply-To", email.reply_to)):
        if name in extra:
            _set(msg, name, extra[name])
        elif values:
            _set(msg, name, ", ".join(str(v) for v in values))
    given = {name.lower() for name in extra}
    if "date" not in given:
        _set(msg, "Date", formatdate(localtime=settings.EMAIL_USE_LOCALTIME))
    if "message-id" not in given:
        _set(msg, "Message-ID", make_msgid(domain=DNS_NAME))
    for name, value in extra.items():
        if name.lower() not in OWN_HEADERS:
            _set(msg, name, value)
    return msg


def _supported(email: EmailMessage) -> bool:
    return (
        SUPPORTED
        and not email.attachments
        and (email.encoding or settings.DEFAULT_CHARSET) == CHARSET
        and isinstance(email.body, str)
        and all(
            isinstance(content, str) and mimetype.startswith("text/")
            for content, mimetype in getattr(email, "alternatives", [])
        )
    )


def _set(msg: Message, name: str, value) -> None:
    """``msg[name] = value`` through Django's header check, skipped where it changes nothing."""
    if not (
        isinstance(value, str)
        and len(value) <= AS_IS_LENGTH
        and value.isascii()
        and value.isprintable()
    ):
        name, value = forbid_multi_line_headers(name, value, CHARSET)
    Message.__setitem__(msg, name, value)
