from django.apps import AppConfig


class ChannelsConfig(AppConfig):
    name = "channels"
    verbose_name = "Channels"

    def ready(self) -> None:
        from anymail.signals import tracking

        from .feedback import on_anymail_tracking

        tracking.connect(on_anymail_tracking, dispatch_uid="clarion-email-feedback")
