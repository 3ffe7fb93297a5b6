"""Recipients, notification types, accepted notifications and the delivery log."""

from __future__ import annotations

import uuid
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q


class Traffic(models.TextChoices):
    TRANSACTIONAL = "transactional", "Transactional"
    MARKETING = "marketing", "Marketing"


class Channel(models.TextChoices):
    EMAIL = "email", "Email"
    SMS = "sms", "SMS"
    IN_APP = "in_app", "In-app"
    WEBHOOK = "webhook", "Webhook"


class Recipient(models.Model):
    """A person (or system) Clarion sends to, known to the calling service by external_id."""

    external_id = models.CharField(max_length=255, unique=True)
    email = models.EmailField(max_length=320, blank=True)
    phone = models.CharField(max_length=32, blank=True, help_text="E.164, e.g. +15551234567")
    webhook_url = models.URLField(max_length=2048, blank=True)
    locale = models.CharField(max_length=16, blank=True, default="en")
    timezone = models.CharField(max_length=64, blank=True, default="UTC")
    attributes = models.JSONField(default=dict, blank=True)
    tags = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    erased_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.external_id


class Category(models.Model):
    """A group of notification types a person can opt in or out of as one (e.g. "Orders")."""

    key = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)

    class Meta:
        verbose_name_plural = "categories"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


def channels_problems(channels: Any) -> list[str]:
    """What is wrong with a type's channels: a non-empty list of known channels, once each."""
    if not isinstance(channels, list) or not channels:
        return ["must be a non-empty list of channels"]
    problems = [f"unknown channel {c!r}" for c in channels if c not in Channel.values]
    if not problems and len(set(channels)) != len(channels):
        problems.append("a channel may not repeat")
    return problems


def fallbacks_problems(fallbacks: Any) -> list[str]:
    """What is wrong with a type's fallbacks: a channel -> the channels tried in its place."""
    if not isinstance(fallbacks, dict):
        return ["must map a channel to a list of channels"]
    problems = []
    for channel, chain in fallbacks.items():
        if channel not in Channel.values:
            problems.append(f"unknown channel {channel!r}")
        if not isinstance(chain, list) or any(c not in Channel.values for c in chain):
            problems.append(f"{channel}: must be a list of known channels")
        elif channel in chain or len(set(chain)) != len(chain):
            problems.append(f"{channel}: a chain may not repeat a channel")
    return problems


class NotificationType(models.Model):
    """What an event means: its category, its traffic kind and the channels it goes out on.

    ``channels`` lists the channels a notification is sent on at once; ``fallbacks`` maps a
    channel to the ordered channels tried when it fails (``{"sms": ["email"]}``).
    """

    key = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    category = models.ForeignKey(Category, on_delete=models.PROTECT, related_name="types")
    traffic = models.CharField(max_length=16, choices=Traffic.choices)
    channels = models.JSONField(default=list)
    fallbacks = models.JSONField(default=dict, blank=True)
    sample_data = models.JSONField(default=dict, blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return self.key

    def clean(self) -> None:
        """The checks the catalog file runs, for a type saved in the admin."""
        errors = {
            "channels": channels_problems(self.channels),
            "fallbacks": fallbacks_problems(self.fallbacks),
            "sample_data": [] if isinstance(self.sample_data, dict) else ["must be an object"],
        }
        if errors := {field: problems for field, problems in errors.items() if problems}:
            raise ValidationError(errors)

    @property
    def is_transactional(self) -> bool:
        return self.traffic == Traffic.TRANSACTIONAL


class Notification(models.Model):
    """One accepted event (or broadcast): the inbound side of the pipeline."""

    class Status(models.TextChoices):
        ACCEPTED = "accepted", "Accepted"
        ROUTED = "routed", "Routed"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    type = models.ForeignKey(NotificationType, on_delete=models.PROTECT, related_name="+")
    # Idempotency keys are scoped to the API key that sent them (IETF Idempotency-Key draft).
    api_key_id = models.CharField(max_length=150, blank=True, default="")
    # NULL, not "", when absent: the partial unique constraint skips it.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    # SHA-256 of the canonical JSON request body: same key with another body is refused.
    fingerprint = models.CharField(max_length=64, blank=True)
    data = models.JSONField(default=dict, blank=True)
    # Recipients as external ids, for an event; an audience filter, for a broadcast.
    recipient_ids = models.JSONField(default=list, blank=True)
    audience = models.JSONField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACCEPTED)
    # The type's traffic class when the event was accepted, kept on the row so that routing
    # finds what waits through one index of its own (see ``notification_waiting``).
    traffic = models.CharField(max_length=16, choices=Traffic.choices, editable=False)
    send_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    routed_at = models.DateTimeField(null=True, blank=True)
    # A broadcast's fan-out: the last recipient id whose deliveries are written (fanout.py).
    fanout_cursor = models.BigIntegerField(null=True, blank=True, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["api_key_id", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="notification_idempotency_key_per_api_key",
            )
        ]
        indexes = [
            # What waits to be routed, oldest first, per traffic class. Every routed event
            # leaves a dead entry here until VACUUM; an ordered index scan marks and skips
            # them, where a bitmap scan (the planner's pick when routing had to join the type
            # table for its traffic) read every one again on each call.
            models.Index(
                fields=["traffic", "created_at"],
                condition=Q(status="accepted"),
                name="notification_waiting",
            )
        ]

    def __str__(self) -> str:
        return f"{self.type_id}:{self.id}"

    def save(self, *args, **kwargs):
        if not self.traffic:
            self.traffic = self.type.traffic
        super().save(*args, **kwargs)

    @property
    def is_broadcast(self) -> bool:
        return self.audience is not None


class Delivery(models.Model):
    """One message to one recipient on one channel: the delivery and dedup log.

    The first hop is unique on (notification, recipient, channel); a fallback or
    backup-provider hop is its own row whose ``replaces`` points at the failed one (unique),
    so a chain never forks or loops.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DEFERRED = "deferred", "Deferred"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        DELIVERED = "delivered", "Delivered"
        BOUNCED = "bounced", "Bounced"
        COMPLAINED = "complained", "Complained"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"
        DIGESTED = "digested", "Digested"

    class ErrorKind(models.TextChoices):
        TRANSIENT = "transient", "Transient"
        PERMANENT = "permanent", "Permanent"
        AMBIGUOUS = "ambiguous", "Ambiguous"

    OPEN_STATUSES = (Status.PENDING, Status.DEFERRED, Status.SENDING)

    notification = models.ForeignKey(
        Notification, on_delete=models.CASCADE, related_name="deliveries"
    )
    # Indexed by delivery_recipient_time, whose first column it is: a second index on it
    # alone cost every row version one more index entry.
    recipient = models.ForeignKey(
        Recipient, on_delete=models.CASCADE, related_name="deliveries", db_index=False
    )
    channel = models.CharField(max_length=16, choices=Channel.choices)
    traffic = models.CharField(max_length=16, choices=Traffic.choices)
    provider = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    skip_reason = models.CharField(max_length=64, blank=True)
    replaces = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="replaced_by"
    )
    hop = models.PositiveSmallIntegerField(default=0)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    provider_message_id = models.CharField(max_length=255, blank=True)
    template_version = models.ForeignKey(
        "templates_app.TemplateVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    error_kind = models.CharField(max_length=16, choices=ErrorKind.choices, blank=True)
    error_message = models.TextField(blank=True)
    # Set when a worker died mid-send: the provider may have received it already.
    possible_duplicate = models.BooleanField(default=False)
    is_test = models.BooleanField(default=False)
    digest = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="digested_items",
        db_index=False,  # delivery_digest_items: only the few rows a digest took in
    )
    # Summary of what was sent (subject or first line), cleared on erase.
    summary = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["notification", "recipient", "channel"],
                condition=Q(replaces__isnull=True, is_test=False),
                name="delivery_first_hop_once",
            )
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status="deferred"),
                name="delivery_deferred_due",
            ),
            models.Index(
                fields=["updated_at"],
                condition=Q(status__in=["pending", "sending"]),
                name="delivery_in_flight",
            ),
            models.Index(fields=["provider", "provider_message_id"], name="delivery_provider_id"),
            models.Index(fields=["recipient", "created_at"], name="delivery_recipient_time"),
            models.Index(
                fields=["digest"], condition=Q(digest__isnull=False), name="delivery_digest_items"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.channel} to {self.recipient_id} ({self.status})"


class FeedItem(models.Model):
    """An in-app message in a recipient's feed."""

    recipient = models.ForeignKey(Recipient, on_delete=models.CASCADE, related_name="feed")
    delivery = models.OneToOneField(
        Delivery, null=True, blank=True, on_delete=models.SET_NULL, related_name="feed_item"
    )
    title = models.CharField(max_length=255)
    body = models.TextField(blank=True)
    link = models.URLField(max_length=2048, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(
                fields=["recipient"], condition=Q(read_at__isnull=True), name="feed_unread"
            )
        ]
