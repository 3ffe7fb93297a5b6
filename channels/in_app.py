"""In-app: feed rows per recipient, written in bulk; read through the feed API."""

from __future__ import annotations

from notifications.models import FeedItem

from .base import Message, Outcome


class FeedProvider:
    def __init__(self, *, name: str, channel: str):
        self.name = name
        self.channel = channel

    def send_batch(self, messages: list[Message]) -> list[Outcome]:
        items = [
            FeedItem(
                recipient_id=m.metadata["recipient_id"],
                delivery_id=m.delivery_id,
                title=m.content.get("title", "")[:255],
                body=m.content.get("body", ""),
                link=m.content.get("link", ""),
            )
            for m in messages
        ]
        # The delivery is unique on the feed row, so a re-sent batch adds nothing twice.
        FeedItem.objects.bulk_create(items, ignore_conflicts=True)
        return [Outcome.ok(m.delivery_id, f"feed-{m.delivery_id}") for m in messages]
