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
