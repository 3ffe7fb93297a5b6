"""Inbound provider webhooks, mounted at /webhooks/."""

from django.urls import path

from . import webhooks

app_name = "webhooks"

urlpatterns = [
    path("twilio/status/", webhooks.twilio_status, name="twilio-status"),
    path("twilio/inbound/", webhooks.twilio_inbound, name="twilio-inbound"),
    # anymail's tracking view of the ESP in use (e.g. postmark/tracking/), behind basic auth.
    path("anymail/<slug:esp>/tracking/", webhooks.email_tracking, name="email-tracking"),
]
