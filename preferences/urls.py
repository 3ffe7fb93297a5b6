"""End-user pages: preference center and one-click unsubscribe."""

from django.urls import path

from . import views

app_name = "preferences"

urlpatterns = [
    path("preferences/<str:token>/", views.preference_center, name="center"),
    path("unsubscribe/<str:token>/", views.unsubscribe, name="unsubscribe"),
]
