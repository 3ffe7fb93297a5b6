"""Notification types by key for event intake, kept briefly in each process.

Every accepted event needs its type, and reading it was an eighth of an API request. Types
change by hand (the admin, catalog sync), so each process keeps what it read for
``TYPE_CACHE_SECONDS``: a change saved in this process applies at once (the signals below
clear the cache), one saved on another node within that many seconds. Unknown keys are
never remembered, so a type created elsewhere is usable as soon as it is committed.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from django.conf import settings
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from .models import NotificationType

_cache: dict[str, tuple[float, NotificationType]] = {}


def types_by_key(keys: Iterable[str]) -> dict[str, NotificationType]:
    now = time.monotonic()
    found: dict[str, NotificationType] = {}
    missing: list[str] = []
    for key in set(keys):
        hit = _cache.get(key)
        if hit is not None and hit[0] > now:
            found[key] = hit[1]
        else:
            missing.append(key)
    if missing:
        read = NotificationType.objects.filter(key__in=missing).order_by()
        expires = now + settings.TYPE_CACHE_SECONDS
        for ntype in read:
            found[ntype.key] = ntype
            _cache[ntype.key] = (expires, ntype)
    return found


@receiver(post_save, sender=NotificationType)
@receiver(post_delete, sender=NotificationType)
def _forget(**kwargs) -> None:
    _cache.clear()
