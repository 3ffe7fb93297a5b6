"""What providers told us about sent messages, kept to make their webhooks idempotent."""

from __future__ import annotations

from django.db import models


class ProviderEvent(models.Model):
    """One (provider, message, event) seen once: a replayed webhook finds it and does nothing.

    Twilio signs no timestamp, so a captured callback could be replayed at will; this row,
    not the signature, is what makes the replay harmless.
    """

    provider = models.CharField(max_length=50)
    message_id = models.CharField(max_length=255)
    event = models.CharField(max_length=50)
    received_at = models.DateTimeField(auto_now_add=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "message_id", "event"], name="provider_event_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider} {self.message_id} {self.event}"
