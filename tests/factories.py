"""factory-boy factories for every model tests build."""

from __future__ import annotations

import factory

from notifications.models import Category, Notification, NotificationType, Recipient, Traffic


class RecipientFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Recipient

    external_id = factory.Sequence(lambda n: f"user-{n}")
    email = factory.LazyAttribute(lambda o: f"{o.external_id}@example.com")
    phone = factory.Sequence(lambda n: f"+1555{n:07d}")
    locale = "en"
    timezone = "UTC"


class CategoryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Category
        django_get_or_create = ("key",)

    key = factory.Sequence(lambda n: f"category-{n}")
    name = factory.LazyAttribute(lambda o: o.key.title())


class NotificationTypeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = NotificationType

    key = factory.Sequence(lambda n: f"type-{n}")
    name = factory.LazyAttribute(lambda o: o.key)
    category = factory.SubFactory(CategoryFactory)
    traffic = Traffic.TRANSACTIONAL
    channels = factory.LazyFunction(lambda: ["email"])
    fallbacks = factory.LazyFunction(dict)


class NotificationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Notification

    type = factory.SubFactory(NotificationTypeFactory)
    data = factory.LazyFunction(dict)


class TemplateFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "templates_app.Template"

    notification_type = factory.SubFactory(NotificationTypeFactory)
    channel = "email"
    locale = "en"


def add_template(ntype, channel: str, content: dict, locale: str = "en"):
    """A template with one current version holding ``content`` (compiled as authored)."""
    from templates_app.models import TemplateVersion

    template = TemplateFactory(notification_type=ntype, channel=channel, locale=locale)
    version = TemplateVersion.objects.create(
        template=template, number=1, content=content, compiled=content, checksum="test"
    )
    template.current_version = version
    template.save(update_fields=["current_version"])
    return version


DEFAULT_CONTENT = {
    "email": {
        "subject": "Order {{ data.order_id }} shipped",
        "html": "<p>Hello {{ recipient.external_id }}, order {{ data.order_id }} shipped.</p>",
        "text": "Hello {{ recipient.external_id }}, order {{ data.order_id }} shipped.",
    },
    "sms": {"text": "Order {{ data.order_id }} shipped"},
    "in_app": {"title": "Order {{ data.order_id }} shipped", "body": "On its way", "link": ""},
    "webhook": {},
}


def notification_type_with_templates(channels=("email",), **kwargs):
    ntype = NotificationTypeFactory(channels=list(channels), **kwargs)
    for channel in channels:
        if DEFAULT_CONTENT[channel]:
            add_template(ntype, channel, DEFAULT_CONTENT[channel])
    return ntype
