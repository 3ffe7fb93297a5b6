"""Provider health in the admin: each provider's breaker, and what providers reported."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin

from . import breaker
from .models import ProviderEvent


@admin.register(ProviderEvent)
class ProviderEventAdmin(admin.ModelAdmin):
    list_display = ["received_at", "provider", "event", "message_id"]
    list_filter = ["provider", "event"]
    search_fields = ["message_id"]
    date_hierarchy = "received_at"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def changelist_view(self, request, extra_context=None):
        providers = [breaker.state(name) for name in sorted(settings.PROVIDERS)]
        return super().changelist_view(request, {**(extra_context or {}), "breakers": providers})
