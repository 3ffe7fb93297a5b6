"""Message templates per notification type x channel x locale, with immutable versions."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from notifications.models import Channel, NotificationType

from .locales import LocaleField


class Layout(models.Model):
    """A shared email wrapper (header and footer) around a template's content."""

    key = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    html = models.TextField(help_text="Jinja2; the content is inserted with {{ content }}.")
    text = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.name


class Template(models.Model):
    """The words of one notification type on one channel in one locale.

    Its content lives in versions; ``current_version`` is the one sending uses.
    """

    notification_type = models.ForeignKey(
        NotificationType, on_delete=models.CASCADE, related_name="templates"
    )
    channel = models.CharField(max_length=16, choices=Channel.choices)
    locale = LocaleField(max_length=16, default="en")
    layout = models.ForeignKey(Layout, null=True, blank=True, on_delete=models.SET_NULL)
    current_version = models.ForeignKey(
        "TemplateVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["notification_type", "channel", "locale"], name="template_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.notification_type_id}/{self.channel}/{self.locale}"


class TemplateVersion(models.Model):
    """An immutable snapshot of a template's content and its compiled form.

    ``content`` holds the authored parts by channel: email ``subject``, ``html``, ``text``;
    sms ``text``; in_app ``title``, ``body``, ``link``; webhook ``payload`` (or none for the
    raw data). ``compiled`` holds what sending uses (layout applied, CSS inlined, text derived).
    """

    template = models.ForeignKey(Template, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    content = models.JSONField()
    compiled = models.JSONField(default=dict)
    checksum = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.UniqueConstraint(fields=["template", "number"], name="template_version_once")
        ]

    def __str__(self) -> str:
        return f"{self.template} v{self.number}"


class UtmParameters(models.Model):
    """UTM parameters added to the http(s) links of one notification type's email."""

    notification_type = models.OneToOneField(
        NotificationType, on_delete=models.CASCADE, related_name="utm_parameters"
    )
    params = models.JSONField(
        default=dict, help_text='e.g. {"utm_source": "clarion", "utm_medium": "email"}'
    )

    class Meta:
        verbose_name = "UTM parameters"
        verbose_name_plural = "UTM parameters"

    def __str__(self) -> str:
        return f"UTM for {self.notification_type_id}"
