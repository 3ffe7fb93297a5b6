"""Admin: the delivery log (filters, search, skip reasons) and the catalog."""

from __future__ import annotations

from django.contrib import admin
from django.db import models
from django.urls import reverse
from django.utils.html import format_html

from preferences.admin import RECIPIENT_ACTIONS, RECIPIENT_INLINES
from templates_app.admin import RecompileOnSave
from templates_app.compiling import templates_using

from .broadcasts import progress
from .models import Category, Delivery, FeedItem, Notification, NotificationType, Recipient


@admin.register(Recipient)
class RecipientAdmin(admin.ModelAdmin):
    list_display = ["external_id", "email", "phone", "locale", "timezone", "created_at"]
    search_fields = ["external_id", "email", "phone"]
    readonly_fields = ["created_at", "updated_at", "erased_at"]
    actions = RECIPIENT_ACTIONS
    inlines = RECIPIENT_INLINES
    # Django 6 assumes https for scheme-less URLs; say so now (and silence its warning).
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    def has_delete_permission(self, request, obj=None) -> bool:
        # A person leaves through the erase action (GDPR): their addresses stay suppressed
        # and the consent log says who erased them. A plain delete would do neither.
        return False


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ["key", "name"]
    search_fields = ["key", "name"]


@admin.register(NotificationType)
class NotificationTypeAdmin(RecompileOnSave, admin.ModelAdmin):
    list_display = ["key", "name", "category", "traffic", "channels", "is_active"]
    list_filter = ["traffic", "category", "is_active"]
    search_fields = ["key", "name"]

    def affected(self, obj):
        # Its traffic decides the marketing footer its emails are compiled with.
        return templates_using(ntype=obj)


class DeliveryInline(admin.TabularInline):
    model = Delivery
    fields = [
        "recipient",
        "channel",
        "provider",
        "status",
        "skip_reason",
        "attempts",
        "error_kind",
        "error_message",
        "replaces_id",
        "sent_at",
    ]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("recipient")


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ["id", "type", "status", "created_at", "routed_at"]
    list_filter = ["status", "type", ("created_at", admin.DateFieldListFilter)]
    search_fields = ["id", "idempotency_key", "deliveries__recipient__external_id"]
    readonly_fields = [*(f.name for f in Notification._meta.fields), "deliveries_by_status"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request) -> bool:
        return False

    def get_inlines(self, request, obj):
        # A broadcast has a delivery per person: its counts here, its rows in the delivery log.
        return [] if obj is not None and obj.is_broadcast else [DeliveryInline]

    @admin.display(description="deliveries")
    def deliveries_by_status(self, notification: Notification) -> str:
        counts = progress(notification)
        log = reverse("admin:notifications_delivery_changelist")
        return format_html(
            '{} in all: {} (<a href="{}?notification__id__exact={}">see them</a>)',
            counts["total"],
            ", ".join(f"{n} {status}" for status, n in counts["by_status"].items()) or "none yet",
            log,
            notification.id,
        )


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "notification_type",
        "recipient",
        "channel",
        "status",
        "skip_reason",
        "attempts",
        "provider",
        "created_at",
    ]
    list_filter = [
        "status",
        "channel",
        "notification__type",
        "skip_reason",
        "possible_duplicate",
        "is_test",
        ("created_at", admin.DateFieldListFilter),
    ]
    search_fields = ["recipient__external_id", "recipient__email", "recipient__phone"]
    list_select_related = ["recipient", "notification__type"]
    readonly_fields = [f.name for f in Delivery._meta.fields]
    date_hierarchy = "created_at"

    @admin.display(description="type", ordering="notification__type__key")
    def notification_type(self, delivery: Delivery) -> str:
        return delivery.notification.type.key

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(FeedItem)
class FeedItemAdmin(admin.ModelAdmin):
    list_display = ["recipient", "title", "read_at", "created_at"]
    search_fields = ["recipient__external_id", "title"]
    list_select_related = ["recipient"]
