"""Pick the template version for a type, channel and locale (fr-CA -> fr -> default)."""

from __future__ import annotations

import time

from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

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
# it read. Which version is current changes by hand (publishing, the catalog), so each
# process trusts what it read for TEMPLATE_CACHE_SECONDS: a transactional send then reads no
# template at all. A change saved in this process applies at once (the signals below), one
# saved on another node within that many seconds.
_read: dict[int, TemplateVersion] = {}
_current: dict[tuple[int, str], tuple[float, dict[str, int]]] = {}
_KEEP = 2048


def versions_for(type_id: int, channel: str, *, fresh: bool = False) -> dict[str, TemplateVersion]:
    """Current versions of one type and channel, keyed by ``locale_key``.

    No query while the process trusts what it read; one, or two on a first read, otherwise.
    ``fresh`` reads which are current now: staff who just saved a version and preview or test
    it may reach another web process than the one that saved it.
    """
    current = _current_ids(type_id, channel, fresh)
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


def _current_ids(type_id: int, channel: str, fresh: bool) -> dict[str, int]:
    """Current version ids by the template's locale, as read at most a few seconds ago."""
    now = time.monotonic()
    hit = _current.get((type_id, channel))
    if hit is not None and hit[0] > now and not fresh:
        return hit[1]
    current = dict(
        Template.objects.filter(
            notification_type_id=type_id, channel=channel, current_version__isnull=False
        ).values_list("locale", "current_version_id")
    )
    # "No template" is never kept: a delivery without one fails for good, so one published on
    # another node a moment ago must be found. Nor is a fresh read (a preview, a test send):
    # it may run in the transaction that saves the template, which may yet be rolled back.
    if current and not fresh:
        if len(_current) > _KEEP:
            _current.clear()
        _current[(type_id, channel)] = (now + settings.TEMPLATE_CACHE_SECONDS, current)
    return current


@receiver(post_save, sender=Template)
@receiver(post_delete, sender=Template)
@receiver(post_delete, sender=TemplateVersion)  # a current one's template is set to none
def _forget(**kwargs) -> None:
    # Now, for this transaction's own reads, and at its commit: another thread may read the
    # old state in between and would keep it for the whole TTL.
    _current.clear()
    transaction.on_commit(_current.clear)


def pick(versions: dict[str, TemplateVersion], locale: str) -> TemplateVersion | None:
    for candidate in locale_chain(locale):
        if candidate in versions:
            return versions[candidate]
    return None
