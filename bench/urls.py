"""Clarion's URLs plus the bench's bare view (never part of a deployment)."""

from django.urls import path

from config.urls import urlpatterns as clarion

from .views import bare_insert

urlpatterns = [path("bench/bare/", bare_insert), *clarion]
