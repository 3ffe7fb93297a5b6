"""Providers by name, built once per process from settings.PROVIDERS."""

from __future__ import annotations

from functools import cache

from django.conf import settings
from django.utils.module_loading import import_string

from .base import Provider


@cache
def get_provider(name: str) -> Provider:
    spec = settings.PROVIDERS[name]
    backend = import_string(spec["backend"])
    return backend(name=name, channel=spec["channel"], **spec.get("options", {}))


def provider_names(channel: str) -> list[str]:
    """The channel's providers in order: primary first, then backups."""
    return list(settings.CHANNEL_PROVIDERS.get(channel, []))


def primary_provider(channel: str) -> str:
    return provider_names(channel)[0]


def reset() -> None:
    """Forget built providers (tests that change settings.PROVIDERS call this)."""
    get_provider.cache_clear()
