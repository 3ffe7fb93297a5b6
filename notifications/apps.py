from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"

    def ready(self) -> None:
        from . import types  # noqa: F401 - connects the type cache's invalidation
        from .api import schema  # noqa: F401 - registers the OpenAPI auth extension
