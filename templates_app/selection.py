"""Pick the template version for a type, channel and locale (fr-CA -> fr -> default)."""

from __future__ import annotations

from django.conf import settings

from .models import Template, TemplateVersion


def locale_chain(locale: str) -> list[str]:
    chain: list[str] = []
    if locale:
        chain.append(locale)
        language = locale.replace("_", "-").split("-")[0]
        if language != locale:
            chain.append(language)
    if settings.LANGUAGE_CODE not in chain:
        chain.append(settings.LANGUAGE_CODE)
    return chain


def versions_for(type_id: int, channel: str) -> dict[str, TemplateVersion]:
    """Current versions by locale for one type and channel, in one query."""
    templates = Template.objects.filter(
        notification_type_id=type_id, channel=channel, current_version__isnull=False
    ).select_related("current_version")
    return {t.locale: t.current_version for t in templates}


def pick(versions: dict[str, TemplateVersion], locale: str) -> TemplateVersion | None:
    for candidate in locale_chain(locale):
        if candidate in versions:
            return versions[candidate]
    return None
