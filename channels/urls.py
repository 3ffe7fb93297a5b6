"""Inbound provider webhooks (delivery status, bounces, SMS replies)."""

urlpatterns: list = []
