"""An email backend that builds each complete MIME message and throws it away, counting.

The count and, for Clarion's messages, the moment each delivery reached the "provider" are
kept in Redis, so the bench process sees what every worker process sent.
"""

from __future__ import annotations

import re
import time
from functools import cache

import redis
from django.conf import settings
from django.core.mail.backends.base import BaseEmailBackend

SENT = "bench:sent"
SENT_AT = "bench:sent-at"
# Clarion's Message-IDs carry the delivery id: <time.pid.random.d<id>@host>.
DELIVERY = re.compile(r"\.d(\d+)@")


@cache
def client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


class EmailBackend(BaseEmailBackend):
    def send_messages(self, messages) -> int:
        now = time.time()
        sizes = 0
        stamps = {}
        for message in messages:
            sizes += len(message.message().as_bytes())
            match = DELIVERY.search(message.extra_headers.get("Message-ID", ""))
            if match:
                stamps[match.group(1)] = now
        pipe = client(settings.REDIS_URL).pipeline(transaction=False)
        pipe.incrby(SENT, len(messages))
        pipe.incrby(f"{SENT}:bytes", sizes)
        if stamps:
            pipe.hset(SENT_AT, mapping=stamps)
        pipe.execute()
        return len(messages)
