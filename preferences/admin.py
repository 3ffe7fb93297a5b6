"""Admin: consent log (read-only), suppressions, preferences, and GDPR recipient actions."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.http import HttpResponse

from .addresses import address_error, address_hash, normalize
from .gdpr import recipient_erase, recipient_export
from .models import ConsentLog, Preference, QuietHours, Suppression, TypeDefault
from .services import MAX_DAILY_CAP, Actor, consent_log
from .suppressions import suppression_add, suppressions_lift


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

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("category", "notification_type")


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


class SuppressionForm(forms.ModelForm):
    """Checks the address for its channel, and that it is not suppressed already."""

    class Meta:
        model = Suppression
        fields = ["channel", "address", "scope", "reason", "source"]

    def clean(self):
        cleaned = super().clean()
        channel, scope = cleaned.get("channel"), cleaned.get("scope")
        address = cleaned.get("address", "")
        if not channel or self.instance.pk:
            return cleaned
        if problem := address_error(channel, address):
            self.add_error("address", problem)
            return cleaned
        cleaned["address"] = normalize(channel, address)
        taken = Suppression.objects.filter(
            channel=channel, address_hash=address_hash(channel, address), scope=scope
        )
        if taken.exists():
            raise forms.ValidationError(
                "%(address)s is already suppressed on %(channel)s for this scope.",
                params={"address": cleaned["address"], "channel": channel},
                code="duplicate",
            )
        return cleaned


@admin.register(Suppression)
class SuppressionAdmin(admin.ModelAdmin):
    """Suppressions are added and lifted, never edited; each change is in the consent log."""

    form = SuppressionForm
    list_display = ["channel", "address", "scope", "reason", "source", "created_at"]
    list_filter = ["channel", "scope", "reason"]
    search_fields = ["address", "address_hash"]
    fields = ["channel", "address", "scope", "reason", "source"]

    def get_readonly_fields(self, request, obj=None):
        return self.fields if obj else []

    def save_model(self, request, obj, form, change) -> None:
        if change:  # every field is read-only once added
            return
        data = form.cleaned_data
        added = suppression_add(
            channel=data["channel"],
            address=data["address"],
            reason=data["reason"],
            scope=data["scope"],
            source=data["source"] or f"admin:{request.user.get_username()}",
            actor=_actor(request),
        )
        obj.pk = added.pk  # the admin's messages and redirect name the row written

    def delete_model(self, request, obj) -> None:
        suppressions_lift([obj], actor=_actor(request))

    def delete_queryset(self, request, queryset) -> None:
        suppressions_lift(queryset, actor=_actor(request))


class ConsentLoggedAdmin(admin.ModelAdmin):
    """A person's choices changed by staff: each save and delete (bulk ones too) is logged."""

    def consent_state(self, obj) -> dict:
        raise NotImplementedError

    def get_readonly_fields(self, request, obj=None):
        # Whose choice it is never changes: the log would show it under one person only.
        return ["recipient"] if obj else []

    def save_model(self, request, obj, form, change) -> None:
        before = self.consent_state(type(obj).objects.get(pk=obj.pk)) if change else None
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            consent_log(
                recipient=obj.recipient,
                actor=_actor(request),
                action="admin_change",
                before=before,
                after=self.consent_state(obj),
            )

    def delete_model(self, request, obj) -> None:
        self.delete_queryset(request, type(obj).objects.filter(pk=obj.pk))

    def delete_queryset(self, request, queryset) -> None:
        actor = _actor(request)
        with transaction.atomic():
            for obj in queryset.select_related("recipient").select_for_update(of=("self",)):
                consent_log(
                    recipient=obj.recipient,
                    actor=actor,
                    action="admin_delete",
                    before=self.consent_state(obj),
                )
                obj.delete()


@admin.register(Preference)
class PreferenceAdmin(ConsentLoggedAdmin):
    list_display = ["recipient", "category", "notification_type", "channel", "enabled", "frequency"]
    list_filter = ["enabled", "frequency", "channel", "category"]
    search_fields = ["recipient__external_id"]
    raw_id_fields = ["recipient"]
    list_select_related = ["recipient", "category", "notification_type"]

    def consent_state(self, obj: Preference) -> dict:
        return {
            "category": obj.category.key if obj.category else None,
            "type": obj.notification_type.key if obj.notification_type else None,
            "channel": obj.channel,
            "enabled": obj.enabled,
            "frequency": obj.frequency,
        }


class QuietHoursForm(forms.ModelForm):
    """The checks the preferences API runs: a window has two different ends, a cap a limit."""

    daily_marketing_cap = forms.IntegerField(
        required=False, min_value=0, max_value=MAX_DAILY_CAP, help_text="Empty for no cap."
    )

    class Meta:
        model = QuietHours
        fields = ["recipient", "start", "end", "daily_marketing_cap"]

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("start"), cleaned.get("end")
        if (start is None) != (end is None):
            raise forms.ValidationError("Give both the start and the end, or neither.")
        if start is not None and start == end:
            raise forms.ValidationError("Start and end must differ.")
        return cleaned


@admin.register(QuietHours)
class QuietHoursAdmin(ConsentLoggedAdmin):
    form = QuietHoursForm
    list_display = ["recipient", "start", "end", "daily_marketing_cap"]
    raw_id_fields = ["recipient"]

    def consent_state(self, obj: QuietHours) -> dict:
        return {
            "start": obj.start.isoformat() if obj.start else None,
            "end": obj.end.isoformat() if obj.end else None,
            "daily_marketing_cap": obj.daily_marketing_cap,
        }


@admin.register(TypeDefault)
class TypeDefaultAdmin(admin.ModelAdmin):
    list_display = ["notification_type", "enabled", "frequency"]
    list_filter = ["enabled", "frequency"]
