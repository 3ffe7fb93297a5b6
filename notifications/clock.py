"""The one clock every time-based decision reads.

Tests move time by an offset kept in the shared cache, so worker processes see the same
time as the test; the offset is only read when settings.CLOCK_OFFSET_ENABLED is on.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

_OFFSET_KEY = "clock:offset-seconds"


def now() -> datetime:
    if not settings.CLOCK_OFFSET_ENABLED:
        return timezone.now()
    return timezone.now() + timedelta(seconds=float(cache.get(_OFFSET_KEY) or 0))


def set_offset(seconds: float) -> None:
    cache.set(_OFFSET_KEY, seconds, None)


def advance(seconds: float) -> None:
    set_offset(float(cache.get(_OFFSET_KEY) or 0) + seconds)


def reset() -> None:
    cache.delete(_OFFSET_KEY)
