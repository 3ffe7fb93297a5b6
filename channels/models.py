"""What providers told us about sent messages, kept to make their webhooks idempotent."""

from __future__ import annotations

from django.db import models


class ProviderEvent(models.Model):
    """One (provider, message, event) seen once: a replayed webhook finds it and does nothing.

    Twilio signs no timestamp, so a captured callback could be replayed at will; this row,
    not the signature, is what makes the replay harmless.

    A report can arrive before the send batch that sent its message has recorded the
    provider's message id: it is ``parked`` with what it said, and applied once the id is
    known (channels/feedback.py).
    """

    provider = models.CharField(max_length=50)
    message_id = models.CharField(max_length=255)
    event = models.CharField(max_length=50)
    received_at = models.DateTimeField(auto_now_add=True)
    detail = models.JSONField(default=dict, blank=True)
    parked = models.BooleanField(default=False)
    # Times applying this parked report raised: it is tried again after the others. A database
    # default too, so rows inserted by processes not yet upgraded are valid.
    failures = models.IntegerField(default=0, db_default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "message_id", "event"], name="provider_event_once"
            )
        ]
        indexes = [
            models.Index(
                fields=["received_at"],
                condition=models.Q(parked=True),
                name="provider_event_parked",
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider} {self.message_id} {self.event}"
