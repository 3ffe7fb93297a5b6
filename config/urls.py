"""Root URLs: admin, API v1, schema and docs, end-user pages, provider webhooks, ops."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("notifications.api.urls")),
    path("api/v1/", include("preferences.api_urls")),
    # Public, and whatever key a reader's client sends along (a revoked one included).
    path(
        "api/schema/",
        SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[]),
        name="schema",
    ),
    path(
        "api/docs/",
        SpectacularRedocView.as_view(
            url_name="schema", authentication_classes=[], permission_classes=[]
        ),
        name="api-docs",
    ),
    path("webhooks/", include("channels.urls")),
    path("", include("preferences.urls")),
    path("", include("notifications.urls")),
]

# JSON errors under /api/ for what no view answers (no such route, a body too large).
handler400 = "notifications.api.errors.bad_request"
handler404 = "notifications.api.errors.not_found"
handler500 = "notifications.api.errors.server_error"
