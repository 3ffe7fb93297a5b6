"""Input and output shapes of the notifications API."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field, inline_serializer
from rest_framework import serializers

from ..broadcasts import progress
from ..models import Delivery, FeedItem, Notification, Recipient


class RecipientFieldsSerializer(serializers.Serializer):
    """Contact fields of a recipient; only the fields given are written."""

    email = serializers.EmailField(max_length=320, required=False, allow_blank=True)
    phone = serializers.RegexField(
        r"^\+[1-9][0-9]{6,14}$",  # [0-9], not \d: other scripts' digits are no number
        required=False,
        allow_blank=True,
        error_messages={"invalid": "Give the number in E.164 form, e.g. +15551234567."},
    )
    webhook_url = serializers.URLField(max_length=2048, required=False, allow_blank=True)
    locale = serializers.RegexField(
        r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$", max_length=16, required=False
    )
    timezone = serializers.CharField(max_length=64, required=False)
    attributes = serializers.DictField(required=False)
    tags = serializers.ListField(
        child=serializers.CharField(max_length=100), required=False, max_length=100
    )

    def validate_timezone(self, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder, as "America"
            raise serializers.ValidationError("Unknown IANA time zone, e.g. Europe/Paris.")
        return value


class InlineRecipientSerializer(RecipientFieldsSerializer):
    # Ids are opaque, as given by reference or in a URL: " 42" is not "42".
    external_id = serializers.CharField(max_length=255, trim_whitespace=False)


# One instance validates every inline recipient: run_validation keeps nothing between calls,
# and a new serializer per recipient deep-copied all its fields (a fifth of an API request).
_INLINE_RECIPIENT = InlineRecipientSerializer()


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "description": "external_id of a known recipient"},
            {"type": "object", "description": "a recipient given inline (upserted)"},
        ]
    }
)
class RecipientRefField(serializers.Field):
    """A recipient as an external_id string, or inline as an object (upserted)."""

    def to_internal_value(self, data):
        if isinstance(data, str):
            if not data or len(data) > 255:
                raise serializers.ValidationError("An external_id is 1 to 255 characters.")
            return data
        if isinstance(data, dict):
            return dict(_INLINE_RECIPIENT.run_validation(data))
        raise serializers.ValidationError("Give an external_id string or a recipient object.")

    def to_representation(self, value):
        return value


class NotificationInputSerializer(serializers.Serializer):
    type = serializers.SlugField(max_length=100)
    recipients = serializers.ListField(
        child=RecipientRefField(), min_length=1, max_length=settings.API_MAX_RECIPIENTS
    )
    data = serializers.DictField(required=False, default=dict)
    idempotency_key = serializers.CharField(max_length=255, required=False)
    send_at = serializers.DateTimeField(required=False)


class BulkInputSerializer(serializers.Serializer):
    notifications = serializers.ListField(
        child=serializers.DictField(), min_length=1, max_length=settings.API_BULK_MAX_ITEMS
    )


class AcceptedSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.CharField()
    created = serializers.BooleanField()


class DeliverySerializer(serializers.ModelSerializer):
    recipient = serializers.CharField(source="recipient.external_id")
    replaces = serializers.IntegerField(source="replaces_id", allow_null=True)

    class Meta:
        model = Delivery
        fields = [
            "id",
            "recipient",
            "channel",
            "provider",
            "status",
            "skip_reason",
            "attempts",
            "next_attempt_at",
            "sent_at",
            "error_kind",
            "error_message",
            "replaces",
            "possible_duplicate",
            "created_at",
            "updated_at",
        ]


class NotificationSerializer(serializers.ModelSerializer):
    type = serializers.CharField(source="type.key")
    deliveries = DeliverySerializer(many=True)

    class Meta:
        model = Notification
        fields = [
            "id",
            "type",
            "status",
            "data",
            "send_at",
            "created_at",
            "routed_at",
            "deliveries",
        ]


class RecipientSerializer(serializers.ModelSerializer):
    class Meta:
        model = Recipient
        fields = [
            "external_id",
            "email",
            "phone",
            "webhook_url",
            "locale",
            "timezone",
            "attributes",
            "tags",
            "created_at",
            "updated_at",
        ]


class FeedItemSerializer(serializers.ModelSerializer):
    read = serializers.SerializerMethodField()

    class Meta:
        model = FeedItem
        fields = ["id", "title", "body", "link", "read", "read_at", "created_at"]

    @extend_schema_field(OpenApiTypes.BOOL)
    def get_read(self, item: FeedItem) -> bool:
        return item.read_at is not None


class AudienceSerializer(serializers.Serializer):
    """Who a broadcast goes to: everyone, or every recipient matching all the filters."""

    all = serializers.BooleanField(required=False, help_text="true: every recipient.")
    attributes = serializers.DictField(
        required=False, help_text="Recipient attributes that must all match exactly."
    )
    tags = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="Tags a recipient must all carry."
    )


class BroadcastInputSerializer(serializers.Serializer):
    type = serializers.SlugField(max_length=100)
    audience = serializers.JSONField(
        help_text='{"all": true} or {"attributes": {...}, "tags": [...]}'
    )
    data = serializers.DictField(required=False, default=dict)
    idempotency_key = serializers.CharField(max_length=255, required=False)
    send_at = serializers.DateTimeField(required=False)


class BroadcastSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    type = serializers.CharField(source="type.key")
    status = serializers.CharField()
    audience = AudienceSerializer()
    data = serializers.DictField()
    send_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    routed_at = serializers.DateTimeField(allow_null=True)
    deliveries = serializers.SerializerMethodField()

    @extend_schema_field(
        inline_serializer(
            "BroadcastProgress",
            {
                "total": serializers.IntegerField(),
                "by_status": serializers.DictField(child=serializers.IntegerField()),
            },
        )
    )
    def get_deliveries(self, notification) -> dict:
        return progress(notification)
