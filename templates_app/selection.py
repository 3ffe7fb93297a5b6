"""Pick the template version for a type, channel and locale (fr-CA -> fr -> default)."""

from __future__ import annotations

from django.conf import settings

from .locales import locale_key
from .models import Template, TemplateVersion


def locale_chain(locale: str) -> list[str]:
    """The locales to try, as ``locale_key`` spells them: fr-CA, then fr, then the default."""
    chain: list[str] = []
    tag = locale_key(locale)
    if tag:
        chain.append(tag)
        language = tag.split("-")[0]
        if language != tag:
            chain.append(language)
    default = locale_key(settings.LANGUAGE_CODE)
    if default not in chain:
        chain.append(default)
    return chain


# Versions never change once written (an edit makes a new one), so each process keeps those
# it read: a send batch then asks only which versions are current, not for their content.
_read: dict[int, TemplateVersion] = {}
_KEEP = 2048


def versions_for(type_id: int, channel: str) -> dict[str, TemplateVersion]:
    """Current versions of one type and channel, keyed by ``locale_key``.

    One query, two on a first read.
    """
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
    return {locale_key(loc): versions[vid] for loc, vid in current.items() if versions[vid]}


def pick(versions: dict[str, TemplateVersion], locale: str) -> TemplateVersion | None:
    for candidate in locale_chain(locale):
        if candidate in versions:
            return versions[candidate]
    return None
