"""Build the rendered channel messages for a batch of claimed deliveries.

Template context is plain data (event data, recipient fields, links), never model
instances. Template versions are looked up once per (type, channel) in the batch.
"""

from __future__ import annotations

import json
from typing import Any

from channels.base import Message
from preferences.addresses import recipient_address
from preferences.links import email_headers, links_for, with_sms_opt_out
from templates_app.rendering import render_version
from templates_app.selection import pick, versions_for

from .models import Delivery, Recipient

# How a delivery whose message could not be built is failed: its template or its data is at
# fault, so no other provider of the channel could do better (notifications/fallback.py).
RENDER_FAILED, BUILD_FAILED = "render: ", "build: "


class NoTemplate(Exception):
    """No template version exists for the delivery's type, channel and locale chain."""


class BadPayload(ValueError):
    """A webhook payload template rendered to something that is not JSON."""


def recipient_context(recipient: Recipient) -> dict[str, Any]:
    return {
        "external_id": recipient.external_id,
        "email": recipient.email,
        "phone": recipient.phone,
        "locale": recipient.locale,
        "timezone": recipient.timezone,
        "attributes": recipient.attributes,
    }


def context_for(delivery: Delivery) -> dict[str, Any]:
    notification = delivery.notification
    ntype = notification.type
    return {
        "data": notification.data,
        "recipient": recipient_context(delivery.recipient),
        "links": links_for(delivery.recipient, ntype),
        "notification": {"id": str(notification.id), "type": ntype.key},
    }


class MessageBuilder:
    """Renders deliveries of one batch, reading template versions once per type and channel
    (and once more for test sends among them)."""

    def __init__(self) -> None:
        self._versions: dict[tuple[int, str, bool], dict] = {}

    def version_for(self, delivery: Delivery):
        # A test send shows staff the version they just saved, wherever it was saved.
        type_id, channel, fresh = key = (
            delivery.notification.type_id,
            delivery.channel,
            delivery.is_test,
        )
        if key not in self._versions:
            self._versions[key] = versions_for(type_id, channel, fresh=fresh)
        return pick(self._versions[key], delivery.recipient.locale)

    def build(self, delivery: Delivery) -> tuple[Message, Any]:
        """The message for a delivery and the template version it used (None for raw data)."""
        version = self.version_for(delivery)
        context = context_for(delivery)
        unsubscribe_url = context["links"]["unsubscribe_url"]  # before a template sees it
        if version is not None:
            content = render_version(version, context)
        elif delivery.channel == "webhook":
            content = {}
        else:
            raise NoTemplate(f"no {delivery.channel} template for {delivery.notification.type.key}")
        if delivery.channel == "webhook" and isinstance(content.get("payload"), str):
            content["payload"] = _json_payload(content["payload"])
        if delivery.channel == "webhook" and "payload" not in content:
            content["payload"] = {
                "notification": context["notification"],
                "recipient": {"external_id": delivery.recipient.external_id},
                "data": context["data"],
            }
        if delivery.channel == "sms" and isinstance(content.get("text"), str):
            content["text"] = with_sms_opt_out(
                content["text"], delivery.recipient, delivery.notification.type
            )
        headers = email_headers(unsubscribe_url) if delivery.channel == "email" else {}
        message = Message(
            delivery_id=delivery.id,
            to=recipient_address(delivery.recipient, delivery.channel),
            content=content,
            headers=headers,
            metadata={
                "recipient_id": delivery.recipient_id,
                "notification_id": str(delivery.notification_id),
                "type": delivery.notification.type.key,
                "traffic": delivery.traffic,
            },
        )
        return message, version


def _json_payload(text: str) -> Any:
    # Payload templates write JSON text (values through ``| tojson``); parse it here so the
    # receiver always gets valid JSON and a broken template fails the delivery, not the batch.
    try:
        return json.loads(text)
    except ValueError as exc:
        raise BadPayload(f"webhook payload is not JSON: {exc}") from exc


def summary_of(content: dict[str, Any]) -> str:
    for part in ("subject", "title", "text", "body"):
        value = content.get(part)
        if isinstance(value, str) and value.strip():
            return value.strip().splitlines()[0][:255]
    return ""
