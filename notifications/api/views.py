"""API v1 views: thin, each validates input, calls a service and shapes the answer."""

from __future__ import annotations

from django.db.models import Count, Q, prefetch_related_objects
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import broadcasts, clock, services
from ..models import FeedItem, Notification, Recipient
from .auth import api_key_id
from .errors import ApiError, error_body
from .serializers import (
    AcceptedSerializer,
    BroadcastInputSerializer,
    BroadcastSerializer,
    BulkInputSerializer,
    FeedItemSerializer,
    NotificationInputSerializer,
    NotificationSerializer,
    RecipientFieldsSerializer,
    RecipientSerializer,
)

IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    description="Same key and same body: the first notification, nothing new. Same key, "
    "another body: 422 idempotency_key_reused. Scoped to your API key.",
)


def idempotency_key(header_key: str | None, body_key: str | None) -> str | None:
    """The request's key, from the header or the body field (they must agree).

    A header that is present but blank is refused, not read as "no key": the client meant
    one, and its retry would otherwise send twice.
    """
    header_key, body_key = _checked_key(header_key), _checked_key(body_key)
    if header_key and body_key and header_key != body_key:
        raise ApiError(
            "idempotency_key_mismatch",
            "The Idempotency-Key header and the idempotency_key field differ.",
        )
    return header_key or body_key


def _checked_key(key: str | None) -> str | None:
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > 255 or not key.isprintable():
        raise ApiError(
            "invalid_idempotency_key", "Idempotency-Key is 1 to 255 printable characters."
        )
    return key


def body_fingerprint(payload: dict) -> str:
    """Canonical JSON of the body, the key itself aside (a replay may move it to the header)."""
    return services.fingerprint({k: v for k, v in payload.items() if k != "idempotency_key"})


# One instance validates every event, as for inline recipients: a serializer per item of a
# bulk call deep-copied its fields each time.
_EVENT = NotificationInputSerializer()


def event_from(payload: dict, header_key: str | None = None) -> services.EventRequest:
    """Validate one event body; raises ValidationError (400) or ApiError."""
    data = _EVENT.run_validation(payload)
    return services.EventRequest(
        type_key=data["type"],
        recipients=data["recipients"],
        data=data["data"],
        idempotency_key=idempotency_key(header_key, data.get("idempotency_key")),
        send_at=data.get("send_at"),
        fingerprint=body_fingerprint(payload),
    )


def _require_object(request: Request) -> dict:
    if not isinstance(request.data, dict):
        raise ApiError("invalid_request", "The body must be a JSON object.")
    return request.data


def _accepted_body(accepted: services.Accepted) -> dict:
    notification = accepted.notification
    return {"id": str(notification.id), "status": notification.status, "created": accepted.created}


class NotificationCreateView(APIView):
    @extend_schema(
        request=NotificationInputSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={202: AcceptedSerializer},
        summary="Send a notification to one or more recipients",
    )
    def post(self, request: Request) -> Response:
        event = event_from(_require_object(request), request.headers.get("Idempotency-Key"))
        accepted = services.notification_accept(api_key_id=api_key_id(request), event=event)
        if accepted.error:
            error = accepted.error
            raise ApiError(error.code, error.message, error.status, error.fields)
        headers = {} if accepted.created else {"Idempotent-Replayed": "true"}
        return Response(_accepted_body(accepted), status=status.HTTP_202_ACCEPTED, headers=headers)


class NotificationBulkView(APIView):
    @extend_schema(
        request=BulkInputSerializer,
        responses={
            200: inline_serializer(
                "BulkResults",
                {"results": serializers.ListField(child=serializers.DictField())},
            )
        },
        summary="Send many notifications in one call (one result per item, in order)",
    )
    def post(self, request: Request) -> Response:
        serializer = BulkInputSerializer(data=_require_object(request))
        serializer.is_valid(raise_exception=True)
        items = serializer.validated_data["notifications"]
        results: list[dict | None] = [None] * len(items)
        events, positions = [], []
        for index, item in enumerate(items):
            try:
                events.append(event_from(item))
                positions.append(index)
            except serializers.ValidationError as exc:
                results[index] = {
                    "status": 400,
                    **error_body("validation_error", "The item is not valid.", exc.detail),
                }
            except ApiError as exc:
                results[index] = {
                    "status": exc.status_code,
                    **error_body(exc.error_code, str(exc.detail)),
                }
        accepted = services.notifications_accept(api_key_id=api_key_id(request), events=events)
        for index, outcome in zip(positions, accepted, strict=True):
            if outcome.error:
                results[index] = {
                    "status": outcome.error.status,
                    **error_body(outcome.error.code, outcome.error.message, outcome.error.fields),
                }
            else:
                # "status" is the item's HTTP status here, as for failed items.
                results[index] = {
                    "status": 202,
                    "id": str(outcome.notification.id),
                    "created": outcome.created,
                }
        return Response({"results": results}, status=status.HTTP_200_OK)


class NotificationDetailView(APIView):
    @extend_schema(responses=NotificationSerializer, summary="A notification and its deliveries")
    def get(self, request: Request, notification_id) -> Response:
        notification = get_object_or_404(
            Notification.objects.select_related("type"),
            id=notification_id,
            api_key_id=api_key_id(request),
        )
        if notification.is_broadcast:
            # A delivery per person of an audience is no answer to list; its progress is.
            raise ApiError(
                "not_found",
                f"This is a broadcast: read it at /api/v1/broadcasts/{notification.id}/.",
                status_code=404,
            )
        prefetch_related_objects([notification], "deliveries__recipient")
        return Response(NotificationSerializer(notification).data)


class RecipientView(APIView):
    @extend_schema(
        request=RecipientFieldsSerializer,
        responses={200: RecipientSerializer, 201: RecipientSerializer},
        summary="Create or update a recipient",
    )
    def put(self, request: Request, external_id: str) -> Response:
        if len(external_id) > 255:
            raise ApiError("invalid_request", "An external_id is at most 255 characters.")
        serializer = RecipientFieldsSerializer(data=_require_object(request))
        serializer.is_valid(raise_exception=True)
        recipient, created = services.recipient_upsert(
            external_id=external_id, **serializer.validated_data
        )
        return Response(
            RecipientSerializer(recipient).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )

    @extend_schema(responses=RecipientSerializer, summary="A recipient")
    def get(self, request: Request, external_id: str) -> Response:
        recipient = get_object_or_404(Recipient, external_id=external_id)
        return Response(RecipientSerializer(recipient).data)


class FeedView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("unread", bool, description="Only unread items"),
            OpenApiParameter("limit", int, description="At most this many (default 50, max 200)"),
        ],
        responses=inline_serializer(
            "Feed",
            {
                "unread_count": serializers.IntegerField(),
                "items": FeedItemSerializer(many=True),
            },
        ),
        summary="A recipient's in-app feed with its unread count",
    )
    def get(self, request: Request, external_id: str) -> Response:
        recipient = get_object_or_404(Recipient, external_id=external_id)
        try:
            limit = min(max(int(request.query_params.get("limit", 50)), 1), 200)
        except ValueError:
            raise ApiError("invalid_request", "limit must be a whole number.")
        items = FeedItem.objects.filter(recipient=recipient)
        if request.query_params.get("unread") in {"1", "true"}:
            items = items.filter(read_at__isnull=True)
        unread = FeedItem.objects.filter(recipient=recipient).aggregate(
            n=Count("id", filter=Q(read_at__isnull=True))
        )["n"]
        return Response(
            {"unread_count": unread, "items": FeedItemSerializer(items[:limit], many=True).data}
        )


class FeedReadView(APIView):
    @extend_schema(request=None, responses=FeedItemSerializer, summary="Mark a feed item read")
    def post(self, request: Request, external_id: str, item_id: int) -> Response:
        item = get_object_or_404(FeedItem, id=item_id, recipient__external_id=external_id)
        if item.read_at is None:
            FeedItem.objects.filter(id=item.id, read_at__isnull=True).update(read_at=clock.now())
            item.refresh_from_db()
        return Response(FeedItemSerializer(item).data)


class BroadcastCreateView(APIView):
    @extend_schema(
        request=BroadcastInputSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={202: AcceptedSerializer},
        summary="Send one notification type to an audience (everyone, or filters)",
    )
    def post(self, request: Request) -> Response:
        payload = _require_object(request)
        serializer = BroadcastInputSerializer(data=payload)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        key = idempotency_key(request.headers.get("Idempotency-Key"), data.get("idempotency_key"))
        try:
            audience = broadcasts.audience_check(data["audience"])
            accepted = broadcasts.broadcast_accept(
                api_key_id=api_key_id(request),
                type_key=data["type"],
                audience=audience,
                data=data["data"],
                idempotency_key=key,
                send_at=data.get("send_at"),
                # The audience as it is meant: a retry naming its tags in another order
                # is the same broadcast.
                fingerprint=body_fingerprint({**payload, "audience": audience}),
            )
        except broadcasts.AudienceError as exc:
            raise ApiError("validation_error", str(exc), fields=exc.fields) from exc
        if accepted.error:
            error = accepted.error
            raise ApiError(error.code, error.message, error.status, error.fields)
        headers = {} if accepted.created else {"Idempotent-Replayed": "true"}
        return Response(_accepted_body(accepted), status=status.HTTP_202_ACCEPTED, headers=headers)


class BroadcastDetailView(APIView):
    @extend_schema(responses=BroadcastSerializer, summary="A broadcast and its progress")
    def get(self, request: Request, broadcast_id) -> Response:
        notification = get_object_or_404(
            Notification.objects.select_related("type"),
            id=broadcast_id,
            api_key_id=api_key_id(request),
            audience__isnull=False,
        )
        return Response(BroadcastSerializer(notification).data)
