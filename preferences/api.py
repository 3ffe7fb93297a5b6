"""Preferences and GDPR API for backend services (mounted under /api/v1/)."""

from __future__ import annotations

from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from notifications.api.errors import ApiError
from notifications.models import Recipient

from .gdpr import recipient_erase, recipient_export, recipient_lookup
from .models import ConsentLog
from .services import Actor, PreferenceError, preferences_snapshot, preferences_update

CHANNEL_FLAGS = serializers.DictField(child=serializers.BooleanField())

Preferences = inline_serializer(
    "Preferences",
    {
        "marketing": serializers.BooleanField(help_text="false: no marketing at all"),
        "channels": CHANNEL_FLAGS,
        "categories": serializers.DictField(
            child=inline_serializer(
                "CategoryPreference",
                {
                    "frequency": serializers.ChoiceField(["instant", "daily", "weekly", "off"]),
                    "channels": CHANNEL_FLAGS,
                },
            ),
            help_text="Keyed by category key",
        ),
        "types": serializers.DictField(
            child=inline_serializer(
                "TypePreference",
                {"enabled": serializers.BooleanField(), "channels": CHANNEL_FLAGS},
            ),
            help_text="Keyed by notification type key; a type row wins over its category",
        ),
        "quiet_hours": inline_serializer(
            "QuietHours",
            {"start": serializers.CharField(), "end": serializers.CharField()},
            allow_null=True,
            help_text='Local time window, e.g. {"start": "22:00", "end": "08:00"}',
        ),
        "daily_marketing_cap": serializers.IntegerField(allow_null=True),
    },
)

PATCH_EXAMPLE = OpenApiExample(
    "Daily digest of promotions, no SMS, quiet at night",
    value={
        "categories": {"promotions": {"frequency": "daily", "channels": {"sms": False}}},
        "quiet_hours": {"start": "22:00", "end": "08:00"},
    },
    request_only=True,
)


def _recipient(external_id: str) -> Recipient:
    recipient = Recipient.objects.filter(external_id=external_id, erased_at__isnull=True).first()
    if recipient is None:
        raise Http404("No such recipient.")
    return recipient


def _actor(request: Request) -> Actor:
    return Actor.from_request(request, ConsentLog.Source.API, name=f"api-key:{request.auth.prefix}")


class PreferencesView(APIView):
    @extend_schema(responses=Preferences, summary="A recipient's preferences")
    def get(self, request: Request, external_id: str) -> Response:
        return Response(preferences_snapshot(_recipient(external_id)))

    @extend_schema(
        request=Preferences,
        responses=Preferences,
        examples=[PATCH_EXAMPLE],
        summary="Change some of a recipient's preferences (logged in the consent log)",
        description="Only the keys given change. Unknown keys, categories, types or "
        "channels: 400 validation_error with the fields, and nothing changes.",
    )
    def patch(self, request: Request, external_id: str) -> Response:
        recipient = _recipient(external_id)
        if not isinstance(request.data, dict):
            raise ApiError("invalid_request", "The body must be a JSON object.")
        try:
            snapshot = preferences_update(
                recipient=recipient, changes=dict(request.data), actor=_actor(request)
            )
        except PreferenceError as error:
            raise ApiError(
                "validation_error", "The preference change is not valid.", fields=error.fields
            )
        return Response(snapshot)


class ExportView(APIView):
    @extend_schema(
        responses=OpenApiTypes.OBJECT,
        summary="GDPR export: everything held on a recipient (logged)",
    )
    def get(self, request: Request, external_id: str) -> Response:
        return Response(recipient_export(recipient=_recipient(external_id), actor=_actor(request)))


class EraseView(APIView):
    @extend_schema(
        request=None,
        responses=inline_serializer(
            "Erased",
            {"erased": serializers.BooleanField(), "erased_at": serializers.DateTimeField()},
        ),
        summary="GDPR erase: remove a recipient's personal data (logged; repeatable)",
        description="Contact fields, rendered messages, feed items and event data are removed; "
        "each address stays only as a keyed hash so it is never sent marketing again.",
    )
    def post(self, request: Request, external_id: str) -> Response:
        recipient = recipient_lookup(external_id)
        if recipient is None:
            raise Http404("No such recipient.")
        recipient = recipient_erase(recipient=recipient, actor=_actor(request))
        return Response({"erased": True, "erased_at": recipient.erased_at})
