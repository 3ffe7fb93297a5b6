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


# Versions never change once written (an edit makes a new one), so each process keeps those
# it read: a send batch then asks only which versions are current, not for their content.
_read: dict[int, TemplateVersion] = {}
_KEEP = 2048


def versions_for(type_id: int, channel: str) -> dict[str, TemplateVersion]:
    """Current versions by locale for one type and channel: one query, two on a first read."""
    current = dict(
        Template.objects.filter(
            notification_type_id=type_id, channel=channel, current_version__isnull=False
        ).values_list("locale", "current_version_id")
    )
    versions = {vid: _read.get(vid) for vid in current.values()}
    missing = [vid for vid, version in versions.items() if version is None]
    if missing:
        loaded = {v.id: v for v in TemplateVersion.objects.filter(id__in=missing)}
        versions.update(loaded)
        if len(_read) > _KEEP:
            _read.clear()
        _read.update(loaded)
    # A version deleted since the first query (its template went) is as good as none.
    return {locale: versions[vid] for locale, vid in current.items() if versions[vid]}


def pick(versions: dict[str, TemplateVersion], locale: str) -> TemplateVersion | None:
    for candidate in locale_chain(locale):
        if candidate in versions:
            return versions[candidate]
    return None
