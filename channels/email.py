"""Email through Django's EMAIL_BACKEND (anymail ESPs in production), one connection per batch.

Outcomes by kind: SMTP 5xx refusals and ESP 4xx answers are permanent; a refused connection,
SMTP 4xx, ESP 429/5xx and an ESP's "failed" recipient status are transient; a connection lost
or timed out after the message went out (after DATA, or an ESP read timeout) is ambiguous.
"""

from __future__ import annotations

import logging
import secrets
import smtplib
import ssl
from collections.abc import Iterator
from email.policy import compat32

import requests
from anymail.exceptions import (
    AnymailAPIError,
    AnymailError,
    AnymailInvalidAddress,
    AnymailRecipientsRefused,
    AnymailSerializationError,
    AnymailUnsupportedFeature,
)
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.backends import console, dummy, locmem, smtp
from django.core.mail.message import make_msgid
from django.core.mail.utils import DNS_NAME

from .base import AMBIGUOUS, PERMANENT, TRANSIENT, Message, Outcome
from .http import error_for_exception, retry_after_seconds
from .mime import AS_IS_WHEN_SHORT
from .mime_build import text_message

log = logging.getLogger(__name__)

# ESP statuses (anymail_status) that mean the ESP will not deliver it.
REFUSED_STATUSES = {"rejected", "invalid"}
# Anymail's "failed": the ESP answered that it could not send the message, for a reason
# other than the address ("the attempt to send failed for some other reason": e.g. SES bulk
# entry errors, Mailjet's per-message errors, Unisender Go's "temporary_unavailable"). Anymail
# raises only for refused ones. Nothing went out, so it is transient: retried, then the next
# hop (not ambiguous: the ESP said it did not send it; not permanent: the address is fine).
NOT_SENT_STATUSES = {"failed"}
# Django's own backends build the whole message before writing any of it anywhere (the
# file-based one is a console backend).
BUILDS_BEFORE_SENDING = (
    smtp.EmailBackend,
    console.EmailBackend,
    locmem.EmailBackend,
    dummy.EmailBackend,
)


class RenderedEmail(EmailMultiAlternatives):
    """An email built sooner (channels/mime_build.py), whose MIME boundaries are chosen when
    its message is built, and whose short headers are written as they stand.

    Left unset, the standard library's generator picks a boundary at serialisation and
    compiles a new regular expression to search the whole text for it: a sixth of building
    the bytes of a campaign email. 128 random bits drawn after the text is rendered cannot
    be in it but by a chance of 2**-128, so the search has nothing to find. Written as 22
    URL-safe characters, the multipart Content-Type fits on one line and needs no folding.
    The bytes are the same as Django's own otherwise (channels/mime.py).
    """

    def message(self):
        msg = text_message(self) or super().message()
        for part in msg.walk():
            if part.policy is compat32:  # Django's messages up to 5.2; never another policy
                part.policy = AS_IS_WHEN_SHORT
            if part.is_multipart() and part.get_boundary() is None:
                part.set_boundary(f"=_{secrets.token_urlsafe(16)}")
        return msg


class EmailProvider:
    def __init__(
        self,
        *,
        name: str,
        channel: str,
        backend: str | None = None,
        from_email: str = "",
        connection_options: dict | None = None,
    ):
        self.name = name
        self.channel = channel
        self.backend = backend
        self.from_email = from_email
        # Backend keyword arguments (an ESP's api_url, server_token...): two providers on
        # the same ESP backend, a primary and a backup account, differ only here.
        self.connection_options = connection_options or {}

    def build(self, message: Message) -> RenderedEmail:
        content = message.content
        headers = dict(message.headers)
        # Django's cached host name: without a domain, make_msgid asks the resolver each time.
        headers.setdefault("Message-ID", make_msgid(f"d{message.delivery_id}", domain=DNS_NAME))
        email = RenderedEmail(
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
        return list(self.send_each(messages))

    def send_each(self, messages: list[Message]) -> Iterator[Outcome]:
        """One connection for the batch; each outcome yielded as soon as it is known."""
        try:
            connection = get_connection(
                self.backend or settings.EMAIL_BACKEND,
                fail_silently=False,
                **self.connection_options,
            )
            connection.open()
        except (OSError, smtplib.SMTPException, AnymailError, ImproperlyConfigured) as exc:
            # Nothing left the machine: every message can be retried or sent elsewhere.
            for m in messages:
                yield Outcome.failed(
                    m.delivery_id, TRANSIENT, f"connect: {exc}", reached_provider=False
                )
            return
        try:
            for index, message in enumerate(messages):
                outcome = self._send_one(connection, message)
                yield outcome
                if outcome.error_kind and _lost(connection) and not _reopen(connection):
                    for m in messages[index + 1 :]:
                        yield Outcome.failed(
                            m.delivery_id, TRANSIENT, "connection lost", reached_provider=False
                        )
                    break
        finally:
            try:
                connection.close()
            except (OSError, smtplib.SMTPException):
                log.warning("closing the email connection failed", exc_info=True)

    def _send_one(self, connection, message: Message) -> Outcome:
        delivery_id = message.delivery_id
        try:
            email = self.build(message)
            connection.send_messages([email])
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            kind = PERMANENT if codes and all(code >= 500 for code in codes) else TRANSIENT
            return Outcome.failed(delivery_id, kind, f"recipient refused: {exc.recipients}")
        except smtplib.SMTPResponseException as exc:
            # Sender refused, DATA refused, ...: 5xx is final, 4xx asks us to try again.
            kind = PERMANENT if 500 <= exc.smtp_code < 600 else TRANSIENT
            return Outcome.failed(delivery_id, kind, f"{exc.smtp_code} {exc.smtp_error!r}")
        except (TimeoutError, ConnectionError, smtplib.SMTPException) as exc:
            # Lost mid-conversation: the server may have taken the message before it went.
            return Outcome.failed(delivery_id, AMBIGUOUS, f"{type(exc).__name__}: {exc}")
        except AnymailError as exc:
            return anymail_outcome(delivery_id, exc)
        except ValueError as exc:
            # Django refuses addresses and headers it cannot encode (line breaks, bad syntax).
            # Its own backends do so before the message goes; an ESP backend's ValueError may
            # come after its API call (anymail raises its own errors for addresses).
            return Outcome.failed(
                delivery_id,
                PERMANENT,
                f"invalid message: {exc}",
                reached_provider=not isinstance(connection, BUILDS_BEFORE_SENDING),
            )
        status = getattr(email, "anymail_status", None)
        statuses = getattr(status, "status", None) or set()
        if statuses and statuses <= REFUSED_STATUSES:
            return Outcome.failed(delivery_id, PERMANENT, f"ESP refused: {status!r}")
        if statuses and statuses <= REFUSED_STATUSES | NOT_SENT_STATUSES:
            return Outcome.failed(delivery_id, TRANSIENT, f"ESP could not send it: {status!r}")
        esp_id = getattr(status, "message_id", None) if status is not None else None
        return Outcome.ok(delivery_id, esp_id if isinstance(esp_id, str) and esp_id else _id(email))


def _certificate_refused(exc: BaseException) -> bool:
    """Whether a certificate check failed somewhere in an exception's chain of causes
    (requests and urllib3 wrap it in their own errors, as an argument or a reason)."""
    seen: set[int] = set()
    pending: list[object] = [exc]
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return True
        pending += [current.__cause__, current.__context__, getattr(current, "reason", None)]
        pending += current.args
    return False


def anymail_outcome(delivery_id: int, exc: AnymailError) -> Outcome:
    """An ESP error by kind: refused or malformed is permanent, 429/5xx transient, else by cause."""
    text = str(exc)[:2000]
    if isinstance(
        exc, (AnymailInvalidAddress, AnymailUnsupportedFeature, AnymailSerializationError)
    ):
        # Refused by the backend while building its API call: nothing was posted.
        return Outcome.failed(delivery_id, PERMANENT, text, reached_provider=False)
    if isinstance(exc, AnymailRecipientsRefused):
        return Outcome.failed(delivery_id, PERMANENT, text)
    cause = exc.__cause__
    if isinstance(cause, requests.exceptions.SSLError):
        # Anymail's own session reads the answer without Clarion's HTTP client: its TLS
        # errors after the request went out look like those of a handshake. Only a
        # certificate refused is known to have sent nothing (and may go to a backup ESP).
        if _certificate_refused(cause):
            return Outcome.failed(delivery_id, TRANSIENT, text, reached_provider=False)
        return Outcome.failed(delivery_id, AMBIGUOUS, text)
    if isinstance(cause, requests.RequestException) and exc.status_code is None:
        error = error_for_exception(cause)
        return Outcome.failed(delivery_id, error.kind, text, reached_provider=error.sent)
    status = exc.status_code
    if isinstance(exc, AnymailAPIError) and status is not None:
        if status == 429 or status >= 500:
            headers = getattr(exc.response, "headers", None) or {}
            retry_after = retry_after_seconds(headers.get("Retry-After"))
            return Outcome.failed(delivery_id, TRANSIENT, text, retry_after)
        if 400 <= status < 500:
            return Outcome.failed(delivery_id, PERMANENT, text)
    # A 2xx the backend could not read, or something unforeseen: it may have been accepted.
    return Outcome.failed(delivery_id, AMBIGUOUS, text)


def _id(email: RenderedEmail) -> str:
    return email.extra_headers["Message-ID"]


def _lost(connection) -> bool:
    """Whether an SMTP connection died (later messages would fail without being tried)."""
    smtp = getattr(connection, "connection", None)
    if smtp is None or not isinstance(smtp, smtplib.SMTP):
        return False
    try:
        return smtp.noop()[0] != 250
    except (OSError, smtplib.SMTPException):
        return True


def _reopen(connection) -> bool:
    try:
        connection.close()
    except (OSError, smtplib.SMTPException):
        pass
    try:
        connection.open()
        return True
    except (OSError, smtplib.SMTPException):
        return False
