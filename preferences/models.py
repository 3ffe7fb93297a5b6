"""What each person chose to receive, who must never be sent to, and the log of every change."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from notifications.models import Category, Channel, NotificationType, Recipient


class Frequency(models.TextChoices):
    INSTANT = "instant", "Instant"
    DAILY = "daily", "Daily digest"
    WEEKLY = "weekly", "Weekly digest"
    OFF = "off", "Off"


class Preference(models.Model):
    """One opt-in or opt-out at one scope.

    Scope is given by which of category / notification_type / channel are set: none is
    "all marketing"; channel alone is that channel; category (optionally with channel);
    or one notification type (optionally with channel). The most specific match wins.
    """

    recipient = models.ForeignKey(Recipient, on_delete=models.CASCADE, related_name="preferences")
    # PROTECT: a person's choice never vanishes with a category or type deleted from under it
    # (the consent log would not say so); the admin lists the choices in the way instead.
    category = models.ForeignKey(Category, null=True, blank=True, on_delete=models.PROTECT)
    notification_type = models.ForeignKey(
        NotificationType, null=True, blank=True, on_delete=models.PROTECT
    )
    channel = models.CharField(max_length=16, choices=Channel.choices, blank=True)
    enabled = models.BooleanField(default=True)
    frequency = models.CharField(max_length=8, choices=Frequency.choices, default=Frequency.INSTANT)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["recipient", "category", "notification_type", "channel"],
                nulls_distinct=False,
                name="preference_one_per_scope",
            ),
            models.CheckConstraint(
                condition=Q(category__isnull=True) | Q(notification_type__isnull=True),
                name="preference_category_or_type",
            ),
        ]


class QuietHours(models.Model):
    """A person's quiet window and marketing cap, in their own timezone."""

    recipient = models.OneToOneField(
        Recipient, on_delete=models.CASCADE, related_name="quiet_hours"
    )
    start = models.TimeField(null=True, blank=True)
    end = models.TimeField(null=True, blank=True)
    daily_marketing_cap = models.PositiveSmallIntegerField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "quiet hours"


class Suppression(models.Model):
    """An address or number that must not be sent to (bounce, complaint, STOP, manual).

    Kept as a keyed hash so it outlives an erase; the plain address is kept only while the
    person is not erased, for support staff to read.
    """

    class Scope(models.TextChoices):
        ALL = "all", "All mail on the channel"
        MARKETING = "marketing", "Marketing only"

    class Reason(models.TextChoices):
        HARD_BOUNCE = "hard_bounce", "Hard bounce"
        COMPLAINT = "complaint", "Complaint"
        SMS_STOP = "sms_stop", "SMS STOP"
        MANUAL = "manual", "Manual"
        ERASED = "erased", "Erased on request"

    channel = models.CharField(max_length=16, choices=Channel.choices)
    address_hash = models.CharField(max_length=64)
    address = models.CharField(max_length=320, blank=True)
    scope = models.CharField(max_length=16, choices=Scope.choices, default=Scope.ALL)
    reason = models.CharField(max_length=16, choices=Reason.choices)
    source = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "address_hash", "scope"], name="suppression_once_per_scope"
            )
        ]

    def __str__(self) -> str:
        return f"{self.channel}:{self.address or self.address_hash[:12]} ({self.reason})"


class ConsentLog(models.Model):
    """Every change of preference or suppression: who, when, from where, before and after."""

    class Source(models.TextChoices):
        PREFERENCE_CENTER = "preference_center", "Preference center"
        ONE_CLICK = "one_click", "One-click unsubscribe"
        API = "api", "API"
        ADMIN = "admin", "Admin"
        PROVIDER = "provider", "Provider webhook"
        SMS_KEYWORD = "sms_keyword", "SMS keyword"
        SYSTEM = "system", "System"

    recipient = models.ForeignKey(
        Recipient, null=True, blank=True, on_delete=models.SET_NULL, related_name="consent_log"
    )
    source = models.CharField(max_length=32, choices=Source.choices)
    actor = models.CharField(max_length=255, blank=True)
    action = models.CharField(max_length=64)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=512, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]


class TypeDefault(models.Model):
    """What a notification type does for people who chose nothing about it.

    Without a row a type is sent to everyone who did not opt out. ``enabled`` off makes it
    opt-in: only people who turned the type or its category on get it. ``frequency`` is the
    starting cadence (a digest, say) until the person picks one for the category.
    """

    notification_type = models.OneToOneField(
        NotificationType, on_delete=models.CASCADE, related_name="preference_default"
    )
    enabled = models.BooleanField(default=True)
    frequency = models.CharField(max_length=8, choices=Frequency.choices, default=Frequency.INSTANT)

    def __str__(self) -> str:
        return f"default for {self.notification_type_id}"
