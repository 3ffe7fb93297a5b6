"""Admin: consent log (read-only), suppressions, preferences, and GDPR recipient actions."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpResponse

from .addresses import address_hash, normalize
from .gdpr import recipient_erase, recipient_export
from .models import ConsentLog, Preference, QuietHours, Suppression, TypeDefault
from .services import Actor, consent_log


def _actor(request) -> Actor:
    return Actor.from_request(request, ConsentLog.Source.ADMIN)


@admin.action(description="Export selected recipients as JSON (GDPR)")
def export_recipients(modeladmin, request, queryset):
    data = [recipient_export(recipient=r, actor=_actor(request)) for r in queryset]
    response = HttpResponse(
        json.dumps(data, cls=DjangoJSONEncoder, indent=2), content_type="application/json"
    )
    response["Content-Disposition"] = 'attachment; filename="recipients-export.json"'
    return response


@admin.action(description="Erase selected recipients (GDPR; cannot be undone)")
def erase_recipients(modeladmin, request, queryset):
    erased = 0
    for recipient in queryset.filter(erased_at__isnull=True):
        recipient_erase(recipient=recipient, actor=_actor(request))
        erased += 1
    modeladmin.message_user(request, f"Erased {erased} recipient(s).", messages.SUCCESS)


RECIPIENT_ACTIONS = [export_recipients, erase_recipients]


class PreferenceInline(admin.TabularInline):
    """A recipient's choices, read-only: changes go through the API, the page or this admin's
    Preference screen, each of which writes the consent log."""

    model = Preference
    fields = ["category", "notification_type", "channel", "enabled", "frequency", "updated_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class ConsentLogInline(admin.TabularInline):
    """Who changed this person's choices, when and how (support answers "why not?")."""

    model = ConsentLog
    fields = ["created_at", "source", "action", "actor", "ip_address"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ["-created_at"]
    max_num = 0

    def has_add_permission(self, request, obj=None) -> bool:
        return False


RECIPIENT_INLINES = [PreferenceInline, ConsentLogInline]


@admin.register(ConsentLog)
class ConsentLogAdmin(admin.ModelAdmin):
    list_display = ["created_at", "recipient", "source", "action", "actor", "ip_address"]
    list_filter = ["source", "action", ("created_at", admin.DateFieldListFilter)]
    search_fields = ["recipient__external_id", "actor"]
    readonly_fields = [f.name for f in ConsentLog._meta.fields]
    list_select_related = ["recipient"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Suppression)
class SuppressionAdmin(admin.ModelAdmin):
    list_display = ["channel", "address", "scope", "reason", "source", "created_at"]
    list_filter = ["channel", "scope", "reason"]
    search_fields = ["address", "address_hash"]
    fields = ["channel", "address", "scope", "reason", "source"]

    def get_readonly_fields(self, request, obj=None):
        return self.fields if obj else []

    def save_model(self, request, obj, form, change) -> None:
        obj.address = normalize(obj.channel, obj.address)
        obj.address_hash = address_hash(obj.channel, obj.address)
        obj.source = obj.source or f"admin:{request.user.get_username()}"
        super().save_model(request, obj, form, change)
        consent_log(
            recipient=None,
            actor=_actor(request),
            action="suppress",
            after={"channel": obj.channel, "scope": obj.scope, "reason": obj.reason},
        )

    def delete_model(self, request, obj) -> None:
        consent_log(
            recipient=None,
            actor=_actor(request),
            action="unsuppress",
            before={"channel": obj.channel, "scope": obj.scope, "reason": obj.reason},
        )
        super().delete_model(request, obj)


def _preference_state(obj: Preference) -> dict:
    return {
        "category": obj.category.key if obj.category else None,
        "type": obj.notification_type.key if obj.notification_type else None,
        "channel": obj.channel,
        "enabled": obj.enabled,
        "frequency": obj.frequency,
    }


@admin.register(Preference)
class PreferenceAdmin(admin.ModelAdmin):
    list_display = ["recipient", "category", "notification_type", "channel", "enabled", "frequency"]
    list_filter = ["enabled", "frequency", "channel", "category"]
    search_fields = ["recipient__external_id"]
    raw_id_fields = ["recipient"]
    list_select_related = ["recipient", "category", "notification_type"]

    def save_model(self, request, obj, form, change) -> None:
        before = _preference_state(Preference.objects.get(pk=obj.pk)) if change else None
        super().save_model(request, obj, form, change)
        consent_log(
            recipient=obj.recipient,
            actor=_actor(request),
            action="admin_change",
            before=before,
            after=_preference_state(obj),
        )

    def delete_model(self, request, obj) -> None:
        consent_log(
            recipient=obj.recipient,
            actor=_actor(request),
            action="admin_delete",
            before=_preference_state(obj),
        )
        super().delete_model(request, obj)


def _quiet_state(obj: QuietHours) -> dict:
    return {
        "start": obj.start.isoformat() if obj.start else None,
        "end": obj.end.isoformat() if obj.end else None,
        "daily_marketing_cap": obj.daily_marketing_cap,
    }


@admin.register(QuietHours)
class QuietHoursAdmin(admin.ModelAdmin):
    list_display = ["recipient", "start", "end", "daily_marketing_cap"]
    raw_id_fields = ["recipient"]

    def save_model(self, request, obj, form, change) -> None:
        before = _quiet_state(QuietHours.objects.get(pk=obj.pk)) if change else None
        super().save_model(request, obj, form, change)
        consent_log(
            recipient=obj.recipient,
            actor=_actor(request),
            action="admin_change",
            before=before,
            after=_quiet_state(obj),
        )


@admin.register(TypeDefault)
class TypeDefaultAdmin(admin.ModelAdmin):
    list_display = ["notification_type", "enabled", "frequency"]
    list_filter = ["enabled", "frequency"]
