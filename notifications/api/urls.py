"""API v1 routes of the notifications app."""

from django.urls import path

from . import (
    converters,  # noqa: F401 - registers <ext_id:...>
    views,
)

urlpatterns = [
    path("notifications/", views.NotificationCreateView.as_view(), name="notification-create"),
    path("notifications/bulk/", views.NotificationBulkView.as_view(), name="notification-bulk"),
    path(
        "notifications/<uuid:notification_id>/",
        views.NotificationDetailView.as_view(),
        name="notification-detail",
    ),
    path("broadcasts/", views.BroadcastCreateView.as_view(), name="broadcast-create"),
    path(
        "broadcasts/<uuid:broadcast_id>/",
        views.BroadcastDetailView.as_view(),
        name="broadcast-detail",
    ),
    path("recipients/<ext_id:external_id>/", views.RecipientView.as_view(), name="recipient"),
    path(
        "recipients/<ext_id:external_id>/feed/",
        views.FeedView.as_view(),
        name="recipient-feed",
    ),
    path(
        "recipients/<ext_id:external_id>/feed/<int:item_id>/read/",
        views.FeedReadView.as_view(),
        name="recipient-feed-read",
    ),
]
