"""Outbound webhooks: a signed JSON POST to each recipient's webhook URL (docs/webhooks.md)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

from django.conf import settings

from .base import PERMANENT, Message, Outcome
from .http import AddressPolicy, HttpClient, HttpError, status_error

SIGNATURE_HEADER = "Clarion-Signature"
USER_AGENT = "Clarion-Webhook/1"


def split_secrets(value: str) -> list[str]:
    return [secret.strip() for secret in value.split(",") if secret.strip()]


def signing_secrets() -> list[str]:
    """WEBHOOK_SIGNING_SECRET ("new,old" while rotating), or one derived from SECRET_KEY
    (never SECRET_KEY itself, which receivers must not hold)."""
    configured = split_secrets(settings.WEBHOOK_SIGNING_SECRET)
    if configured:
        return configured
    derived = hmac.new(settings.SECRET_KEY.encode(), b"clarion-webhook-signing", hashlib.sha256)
    return [derived.hexdigest()]


def signing_secret() -> str:
    """The current secret (the first): what receivers should be given."""
    return signing_secrets()[0]


def signature(secrets: list[str], timestamp: int, body: bytes) -> str:
    """``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">``, one ``v1`` per secret.

    The timestamp is signed with the body so a captured request cannot be replayed later;
    while a secret is rotated, receivers holding either the new or the old one can verify.
    """
    signed = str(timestamp).encode() + b"." + body
    digests = [hmac.new(s.encode(), signed, hashlib.sha256).hexdigest() for s in secrets]
    return ",".join([f"t={timestamp}", *(f"v1={digest}" for digest in digests)])


def payload_of(message: Message) -> Any:
    """The JSON document to post: the rendered template payload, or the raw event."""
    payload = message.content.get("payload", {})
    if isinstance(payload, str):
        # A template may author the payload as JSON text with placeholders.
        return json.loads(payload)
    return payload


class WebhookProvider:
    def __init__(self, *, name: str, channel: str, secret: str = "", timeout: float | None = None):
        self.name = name
        self.channel = channel
        self.secrets = split_secrets(secret)
        self.timeout = timeout

    def send_batch(self, messages: list[Message]) -> list[Outcome]:
        return list(self.send_each(messages))

    def send_each(self, messages: list[Message]) -> Iterator[Outcome]:
        secrets = self.secrets or signing_secrets()
        # One connection pool per batch: receivers on the same host reuse a connection.
        with HttpClient(
            policy=AddressPolicy.for_webhooks(),
            read_timeout=self.timeout or settings.WEBHOOK_TIMEOUT_SECONDS,
            user_agent=USER_AGENT,
        ) as http:
            for message in messages:
                yield self._send_one(http, secrets, message)

    def _send_one(self, http: HttpClient, secrets: list[str], message: Message) -> Outcome:
        if not message.to:
            return Outcome.failed(
                message.delivery_id,
                PERMANENT,
                "recipient has no webhook URL",
                reached_provider=False,
            )
        try:
            body = json.dumps(payload_of(message), separators=(",", ":"), ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            return Outcome.failed(
                message.delivery_id,
                PERMANENT,
                f"payload is not JSON: {exc}",
                reached_provider=False,
            )
        encoded = body.encode()
        # Wall-clock time, not notifications.clock: receivers compare it with their own clock.
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature(secrets, timestamp, encoded),
            "Clarion-Delivery-Id": str(message.delivery_id),
            "Clarion-Notification-Id": str(message.metadata.get("notification_id", "")),
            "Clarion-Event": str(message.metadata.get("type", "")),
        }
        try:
            response = http.post(message.to, data=encoded, headers=headers)
        except HttpError as exc:
            return exc.outcome(message.delivery_id)
        error = status_error(response)
        if error is not None:
            return error.outcome(message.delivery_id)
        return Outcome.ok(message.delivery_id, f"webhook-{message.delivery_id}-{timestamp}")
