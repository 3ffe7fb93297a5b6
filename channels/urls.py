"""Inbound provider webhooks, mounted at /webhooks/."""

from django.urls import include, path

from . import webhooks

app_name = "webhooks"

urlpatterns = [
    path("twilio/status/", webhooks.twilio_status, name="twilio-status"),
    path("twilio/inbound/", webhooks.twilio_inbound, name="twilio-inbound"),
    # anymail's tracking views, one per ESP (e.g. postmark/tracking/), behind basic auth.
    path("anymail/", include("anymail.urls")),
]
