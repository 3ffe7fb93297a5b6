from django.apps import AppConfig
from django.db.models.signals import post_migrate


class NotificationsConfig(AppConfig):
    name = "notifications"

    def ready(self) -> None:
        from config.cache import create_cache_table

        from . import types  # noqa: F401 - connects the type cache's invalidation
        from .api import schema  # noqa: F401 - registers the OpenAPI auth extension

        post_migrate.connect(create_cache_table, sender=self, dispatch_uid="clarion-cache-table")
