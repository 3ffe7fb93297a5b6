"""Circuit breakers per provider, shared by every worker through the cache (Redis).

Closed: everything goes, and outcomes are counted in time buckets. When the failures in
the last window reach ``failure_ratio`` of at least ``min_calls`` calls, the breaker opens:
for ``open_seconds`` nothing is sent to that provider, and each message goes straight to its
fallback hop. Then it is half-open: exactly one message goes as a probe (the first worker to
take the probe lock sends it; every other batch is still refused). A probe that is sent
closes the breaker; one that fails opens it again.

Only transient and ambiguous outcomes count as failures: a permanent one (a bad address)
says nothing about the provider being down.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

from notifications import clock

log = logging.getLogger("clarion.breaker")


class Admission(enum.Enum):
    ALL = "all"  # closed: send the batch
    PROBE = "probe"  # half-open, and this caller holds the probe: send one message
    NONE = "none"  # open, or half-open with the probe taken elsewhere


@dataclass(frozen=True)
class Limits:
    failure_ratio: float
    min_calls: int
    window_seconds: int
    open_seconds: float


@dataclass(frozen=True)
class BreakerState:
    provider: str
    state: str  # closed, open, half-open
    calls: int
    failures: int
    opened_at: float | None


def limits(provider: str) -> Limits:
    spec = settings.PROVIDERS.get(provider, {}).get("breaker", {})
    return Limits(
        failure_ratio=float(spec.get("failure_ratio", settings.BREAKER_FAILURE_RATIO)),
        min_calls=int(spec.get("min_calls", settings.BREAKER_MIN_CALLS)),
        window_seconds=int(spec.get("window_seconds", settings.BREAKER_WINDOW_SECONDS)),
        open_seconds=float(spec.get("open_seconds", settings.BREAKER_OPEN_SECONDS)),
    )


def _key(provider: str, *parts: object) -> str:
    return ":".join(["breaker", provider, *map(str, parts)])


def _now() -> float:
    return clock.now().timestamp()


def admit(provider: str) -> Admission:
    opened_at = cache.get(_key(provider, "opened_at"))
    if opened_at is None:
        return Admission.ALL
    if _now() < opened_at + limits(provider).open_seconds:
        return Admission.NONE
    # Half-open: one probe at a time, across every worker (an atomic add). The lock expires,
    # so a worker that dies holding it does not keep the breaker half-open for ever.
    if cache.add(_key(provider, "probe"), 1, timeout=settings.BREAKER_PROBE_TIMEOUT_SECONDS):
        log.info("breaker %s half-open: sending one probe", provider)
        return Admission.PROBE
    return Admission.NONE


def record(provider: str, admission: Admission, ok: int, failed: int) -> None:
    """Count a batch's outcomes; open, close or re-open the breaker as they say."""
    if admission is Admission.NONE:
        return
    if admission is Admission.PROBE:
        cache.delete(_key(provider, "probe"))
        if not (ok or failed):
            # No verdict: the probe never reached the provider through its own doing (its send
            # rate said wait, Clarion refused it, it was given back): the next batch probes.
            return
        if failed:
            cache.set(_key(provider, "opened_at"), _now(), timeout=None)
            log.warning("breaker %s re-opened: the probe failed", provider)
        else:
            cache.delete_many([_key(provider, "opened_at"), *_bucket_keys(provider)])
            log.warning("breaker %s closed: the probe was sent", provider)
        return
    if not (ok or failed):
        return
    bucket = int(_now() // limits(provider).window_seconds)
    for kind, count in (("ok", ok), ("failed", failed)):
        if count:
            # One round trip on Redis (config/cache.py): every send batch counts.
            cache.incr_expiring(
                _key(provider, bucket, kind), count, limits(provider).window_seconds * 3
            )
    if failed:
        _maybe_open(provider)


def _bucket_keys(provider: str) -> list[str]:
    bucket = int(_now() // limits(provider).window_seconds)
    return [_key(provider, b, kind) for b in (bucket - 1, bucket) for kind in ("ok", "failed")]


def _counts(provider: str) -> tuple[int, int]:
    """Calls and failures in the current and the previous bucket (the last one-two windows)."""
    values = cache.get_many(_bucket_keys(provider))
    failures = sum(v for k, v in values.items() if k.endswith(":failed"))
    return sum(values.values()), failures


def _maybe_open(provider: str) -> None:
    rules = limits(provider)
    calls, failures = _counts(provider)
    if calls >= rules.min_calls and failures >= rules.failure_ratio * calls:
        # add, not set: of several workers crossing the line together, one opens it.
        if cache.add(_key(provider, "opened_at"), _now(), timeout=None):
            log.warning(
                "breaker %s opened: %d of the last %d calls failed", provider, failures, calls
            )


def state(provider: str) -> BreakerState:
    opened_at = cache.get(_key(provider, "opened_at"))
    calls, failures = _counts(provider)
    if opened_at is None:
        name = "closed"
    elif _now() < opened_at + limits(provider).open_seconds:
        name = "open"
    else:
        name = "half-open"
    return BreakerState(provider, name, calls, failures, opened_at)


def reset(provider: str) -> None:
    cache.delete_many(
        [_key(provider, "opened_at"), _key(provider, "probe"), *_bucket_keys(provider)]
    )
