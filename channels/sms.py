"""SMS through Twilio (the twilio client over channels.http), or to the console in development."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from twilio.base.exceptions import TwilioException
from twilio.http import HttpClient as TwilioHttpClientBase
from twilio.http.response import Response as TwilioResponse
from twilio.rest import Client

from .base import AMBIGUOUS, PERMANENT, TRANSIENT, Message, Outcome
from .http import HttpClient, HttpError, retry_after_seconds

log = logging.getLogger(__name__)

# Twilio errors no retry can fix: invalid To (21211), not a mobile number (21614), the
# recipient replied STOP (21610), and a few like them. Other 4xx are permanent too; these
# are named so the reason reads clearly in the delivery log.
PERMANENT_TWILIO_CODES = {
    21211: "invalid 'To' number",
    21408: "region not enabled",
    21610: "recipient unsubscribed (STOP)",
    21612: "cannot route to this number",
    21614: "not a mobile number",
}


class TwilioTransport(TwilioHttpClientBase):
    """The twilio client's HTTP, sent through channels.http (timeouts, error kinds, no retries).

    ``base_url`` replaces Twilio's scheme and host (tests point it at a fake on loopback).
    Twilio's documented way to change how its client talks HTTP is a custom ``http_client``.
    """

    def __init__(self, http: HttpClient, base_url: str = "") -> None:
        super().__init__(logger=log, is_async=False, timeout=None)
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.last_response: TwilioResponse | None = None

    def rebase(self, url: str) -> str:
        if not self.base_url:
            return url
        base = urlsplit(self.base_url)
        parts = urlsplit(url)
        return urlunsplit(
            (base.scheme, base.netloc, base.path + parts.path, parts.query, parts.fragment)
        )

    def request(
        self,
        method: str,
        url: str,
        params: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> TwilioResponse:
        body = {"json": data} if (headers or {}).get("Content-Type") == "application/json" else {}
        response = self.http.request(
            method,
            self.rebase(url),
            params=params,
            data=None if body else data,
            headers=headers,
            auth=auth,
            **body,
        )
        self.last_response = TwilioResponse(response.status, response.text, response.headers)
        return self.last_response


def twilio_error_kind(status: int | None, code: int | None) -> str:
    if status == 429 or (status is not None and status >= 500):
        return TRANSIENT
    if code in PERMANENT_TWILIO_CODES or (status is not None and 400 <= status < 500):
        return PERMANENT
    # An unexpected answer to a create: it may have been created.
    return AMBIGUOUS


class TwilioProvider:
    def __init__(
        self,
        *,
        name: str,
        channel: str,
        account_sid: str = "",
        auth_token: str = "",
        from_number: str = "",
        messaging_service_sid: str = "",
        base_url: str = "",
        status_callback: str = "",
        timeout: float | None = None,
    ) -> None:
        self.name = name
        self.channel = channel
        self.account_sid = account_sid or settings.TWILIO_ACCOUNT_SID
        self.auth_token = auth_token or settings.TWILIO_AUTH_TOKEN
        self.from_number = from_number or settings.TWILIO_FROM_NUMBER
        self.messaging_service_sid = messaging_service_sid or settings.TWILIO_MESSAGING_SERVICE_SID
        self.base_url = base_url or settings.TWILIO_API_BASE_URL
        self.status_callback = status_callback or settings.TWILIO_STATUS_CALLBACK_URL
        self.timeout = timeout or settings.TWILIO_TIMEOUT_SECONDS

    def send_batch(self, messages: list[Message]) -> list[Outcome]:
        return list(self.send_each(messages))

    def send_each(self, messages: list[Message]) -> Iterator[Outcome]:
        if not (self.account_sid and self.auth_token) or not (
            self.from_number or self.messaging_service_sid
        ):
            error = "Twilio is not configured (account SID, auth token, from number)"
            for m in messages:
                yield Outcome.failed(m.delivery_id, PERMANENT, error, reached_provider=False)
            return
        # The Twilio API is the operator's configured endpoint, not a user-supplied URL: no
        # address guard. One connection pool for the batch.
        with HttpClient(policy=None, read_timeout=self.timeout, user_agent="Clarion") as http:
            transport = TwilioTransport(http, self.base_url)
            client = Client(self.account_sid, self.auth_token, http_client=transport)
            for message in messages:
                yield self._send_one(client, transport, message)

    def params_for(self, message: Message) -> dict[str, str]:
        params = {"to": message.to, "body": message.content.get("text", "")}
        if self.messaging_service_sid:
            params["messaging_service_sid"] = self.messaging_service_sid
        else:
            params["from_"] = self.from_number
        if self.status_callback:
            params["status_callback"] = self.status_callback
        return params

    def _send_one(self, client: Client, transport: TwilioTransport, message: Message) -> Outcome:
        if not message.to:
            return Outcome.failed(
                message.delivery_id,
                PERMANENT,
                "recipient has no phone number",
                reached_provider=False,
            )
        try:
            sent = client.messages.create(**self.params_for(message))
        except HttpError as exc:
            return exc.outcome(message.delivery_id)
        except TwilioException as exc:
            status, code = getattr(exc, "status", None), getattr(exc, "code", None)
            kind = twilio_error_kind(status, code)
            retry_after = None
            if kind == TRANSIENT and transport.last_response is not None:
                retry_after = retry_after_seconds(
                    transport.last_response.headers.get("Retry-After")
                )
            reason = PERMANENT_TWILIO_CODES.get(code, "")
            detail = f"Twilio {status} code {code}{f' ({reason})' if reason else ''}: {exc}"
            return Outcome.failed(message.delivery_id, kind, detail, retry_after)
        except ValueError as exc:
            # A 2xx whose body we could not read: the message was probably created.
            return Outcome.failed(message.delivery_id, AMBIGUOUS, f"unreadable answer: {exc}")
        return Outcome.ok(message.delivery_id, sent.sid or "")


class ConsoleSmsProvider:
    """Development: each SMS is printed to stdout (what `make run` shows)."""

    def __init__(self, *, name: str, channel: str, stream=None) -> None:
        self.name = name
        self.channel = channel
        self.stream = stream

    def send_batch(self, messages: list[Message]) -> list[Outcome]:
        stream = self.stream or sys.stdout
        for message in messages:
            text = message.content.get("text", "")
            stream.write(f"SMS to {message.to} (delivery {message.delivery_id}):\n{text}\n\n")
        stream.flush()
        return [Outcome.ok(m.delivery_id, f"console-{m.delivery_id}") for m in messages]
