"""Send rates per provider: one token bucket in Redis that every worker draws from.

A provider's ``rate`` (messages per second) and ``burst`` come from its PROVIDERS entry
(``"rate_limit": {"rate": 10, "burst": 20}``); no entry, no limit. The bucket lives in Redis
and is refilled and drawn in one Lua script, on Redis's own clock, so any number of workers
on any number of machines stay under the provider's limit together. Trial mode has no
Redis and one machine: it sends without a limit.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import cache

import redis
from django.conf import settings

log = logging.getLogger(__name__)

# Refill by elapsed time, grant what is there (at most ``want``), and say how long until the
# rest would be there. Redis's TIME keeps workers on different machines on one clock.
TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local granted = math.min(want, math.floor(tokens))
tokens = tokens - granted
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 60)
local wait = 0
if granted < want then wait = (want - granted - tokens) / rate end
return {granted, tostring(wait)}
"""


@dataclass(frozen=True)
class Grant:
    granted: int
    wait_seconds: float  # until the rest of what was asked for would be there


# Tokens taken for messages that never left go back, up to the burst: a batch given back
# unsent must not cost the provider's rate (at 1 SMS a second, 99 seconds for 99 messages).
GIVE_BACK = """
local burst = tonumber(ARGV[1])
local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens'))
if tokens ~= nil then
  redis.call('HSET', KEYS[1], 'tokens', tostring(math.min(burst, tokens + tonumber(ARGV[2]))))
end
"""


@cache
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=2)


@cache
def _take_script(url: str):
    return _client(url).register_script(TAKE)


@cache
def _give_back_script(url: str):
    return _client(url).register_script(GIVE_BACK)


def _key(provider: str) -> str:
    return f"clarion:ratelimit:{provider}"


def limit_of(provider: str) -> tuple[float, float] | None:
    spec = settings.PROVIDERS.get(provider, {}).get("rate_limit")
    if not spec or not settings.REDIS_URL:
        return None
    rate = float(spec["rate"])
    return rate, float(spec.get("burst", max(1.0, rate)))


def take(provider: str, want: int) -> Grant:
    """Take up to ``want`` tokens now."""
    limit = limit_of(provider)
    if limit is None:
        return Grant(want, 0.0)
    rate, burst = limit
    script = _take_script(settings.REDIS_URL)
    granted, wait = script(keys=[_key(provider)], args=[rate, burst, want])
    return Grant(int(granted), float(wait))


def give_back(provider: str, count: int) -> None:
    """Return the tokens of ``count`` messages taken for but never handed to the provider."""
    limit = limit_of(provider)
    if limit is None or count <= 0:
        return
    _give_back_script(settings.REDIS_URL)(keys=[_key(provider)], args=[limit[1], count])


def acquire(provider: str, want: int) -> Grant:
    """Take ``want`` tokens, waiting for them only as long as RATE_LIMIT_MAX_WAIT_SECONDS.

    What cannot be had within that wait is left to the caller to send later (the delivery
    is retried, not the worker held): ``granted`` says how many may go now.
    """
    got = take(provider, want)
    granted = got.granted
    deadline = time.monotonic() + settings.RATE_LIMIT_MAX_WAIT_SECONDS
    try:
        while granted < want and time.monotonic() + got.wait_seconds <= deadline:
            time.sleep(max(got.wait_seconds, 0.001))
            got = take(provider, want - granted)
            granted += got.granted
    except BaseException:
        # Cut short while waiting (the task's soft time limit, Redis lost): nothing was sent
        # with what was taken, so it goes back if it can, and the first error is raised.
        # Only a Redis error is caught: the soft time limit striking in the give-back itself
        # must reach the task, in place of the first.
        try:
            give_back(provider, granted)
        except redis.RedisError:
            log.warning("send rate of %s: %d tokens not given back", provider, granted)
        raise
    return Grant(granted, 0.0 if granted == want else got.wait_seconds)
