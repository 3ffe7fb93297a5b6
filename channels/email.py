"""Email through Django's EMAIL_BACKEND (anymail ESPs in production), one connection per batch."""

from __future__ import annotations

import logging
import smtplib

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.message import make_msgid

from .base import PERMANENT, TRANSIENT, Message, Outcome

log = logging.getLogger(__name__)


class EmailProvider:
    def __init__(
        self, *, name: str, channel: str, backend: str | None = None, from_email: str = ""
    ):
        self.name = name
        self.channel = channel
        self.backend = backend
        self.from_email = from_email

    def build(self, message: Message) -> EmailMultiAlternatives:
        content = message.content
        headers = dict(message.headers)
        headers.setdefault("Message-ID", make_msgid(f"d{message.delivery_id}"))
        email = EmailMultiAlternatives(
            subject=content.get("subject", ""),
            body=content.get("text", ""),
            from_email=self.from_email or settings.DEFAULT_FROM_EMAIL,
            to=[message.to],
            headers=headers,
        )
        if content.get("html"):
            email.attach_alternative(content["html"], "text/html")
        return email

    def send_batch(self, messages: list[Message]) -> list[Outcome]:
        connection = get_connection(self.backend or settings.EMAIL_BACKEND, fail_silently=False)
        outcomes: list[Outcome] = []
        try:
            connection.open()
        except (OSError, smtplib.SMTPException) as exc:
            # Nothing left the machine: every message can be retried or sent elsewhere.
            return [Outcome.failed(m.delivery_id, TRANSIENT, f"connect: {exc}") for m in messages]
        try:
            for message in messages:
                outcomes.append(self._send_one(connection, message))
        finally:
            try:
                connection.close()
            except (OSError, smtplib.SMTPException):
                log.warning("closing the email connection failed", exc_info=True)
        return outcomes

    def _send_one(self, connection, message: Message) -> Outcome:
        email = self.build(message)
        try:
            connection.send_messages([email])
        except smtplib.SMTPRecipientsRefused as exc:
            return Outcome.failed(message.delivery_id, PERMANENT, f"refused: {exc}")
        except smtplib.SMTPResponseException as exc:
            kind = PERMANENT if 500 <= exc.smtp_code < 600 else TRANSIENT
            return Outcome.failed(message.delivery_id, kind, f"{exc.smtp_code} {exc.smtp_error!r}")
        except (TimeoutError, ConnectionError, smtplib.SMTPException) as exc:
            return Outcome.failed(message.delivery_id, "ambiguous", f"{type(exc).__name__}: {exc}")
        return Outcome.ok(message.delivery_id, email.extra_headers["Message-ID"])
