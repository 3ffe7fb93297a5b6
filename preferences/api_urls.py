"""Preferences API routes (under /api/v1/)."""

from django.urls import path

from . import api

urlpatterns = [
    path(
        "recipients/<str:external_id>/preferences/",
        api.PreferencesView.as_view(),
        name="recipient-preferences",
    ),
    path("recipients/<str:external_id>/export/", api.ExportView.as_view(), name="recipient-export"),
    path("recipients/<str:external_id>/erase/", api.EraseView.as_view(), name="recipient-erase"),
]
