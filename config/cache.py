"""Django's cache backends as Clarion uses them: Redis, and the database in trial mode.

Both offer ``incr_expiring``, a counter that expires, which the circuit breakers keep.

Redis keeps one client per connection pool. The stock client builds a new ``redis.Redis``
(and its table of ~170 response callbacks) on every cache call. The breaker and rate checks
make several calls per send batch, so that construction showed up in profiles of the send
path; a client per pool is safe to share, as the pool hands out connections per call.
"""

from __future__ import annotations

from django.core.cache.backends import db as django_db
from django.core.cache.backends import redis as django_redis


class RedisCacheClient(django_redis.RedisCacheClient):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._clients: dict[int, object] = {}

    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients[id(pool)] = self._client(connection_pool=pool)
        return client


class RedisCache(django_redis.RedisCache):
    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = RedisCacheClient

    def incr_expiring(self, key, delta: int, timeout: int, version=None) -> None:
        """Add ``delta`` to a counter and set it to expire, in one round trip (a pipeline).

        The stock ``add`` + ``incr`` takes three: the breaker counts every send batch.
        """
        key = self.make_and_validate_key(key, version=version)
        client = self._cache.get_client(key, write=True)
        client.pipeline().incrby(key, delta).expire(key, timeout).execute()


class DatabaseCache(django_db.DatabaseCache):
    """The cache without REDIS_URL: trial mode, or a deployment whose broker is RabbitMQ."""

    def incr_expiring(self, key, delta: int, timeout: int, version=None) -> None:
        """Add ``delta`` to a counter that expires ``timeout`` seconds after it was created."""
        self.add(key, 0, timeout=timeout, version=version)
        self.incr(key, delta, version=version)


def create_cache_table(sender, using: str = "default", **kwargs) -> None:
    """After ``migrate``: the database cache's table, so a deploy needs no second command.

    Only ``createcachetable`` makes it; a deployment without REDIS_URL that ran ``migrate``
    alone failed every event it accepted (the routing doorbell is in the cache). The command
    skips a table that exists, and does nothing when the cache is Redis.
    """
    from django.core.management import call_command

    call_command("createcachetable", database=using, verbosity=0)
