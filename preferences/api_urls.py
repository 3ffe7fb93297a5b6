"""Preferences API routes (under /api/v1/)."""

from django.urls import path

from notifications.api import converters  # noqa: F401 - registers <ext_id:...>

from . import api

urlpatterns = [
    path(
        "recipients/<ext_id:external_id>/preferences/",
        api.PreferencesView.as_view(),
        name="recipient-preferences",
    ),
    path(
        "recipients/<ext_id:external_id>/export/",
        api.ExportView.as_view(),
        name="recipient-export",
    ),
    path(
        "recipients/<ext_id:external_id>/erase/",
        api.EraseView.as_view(),
        name="recipient-erase",
    ),
]
