"""The routing doorbell: at most one routing task waits per traffic class, however many events.

Accepting an event commits its row, then rings: if no routing task of that traffic is waiting
(a flag in the shared cache, set with ``add``, which is SET NX on Redis), it publishes one;
otherwise the waiting task will find the row. A task answers (clears the flag) before it reads
the waiting rows, so an event committed after that read rings again and is never left behind.

Under load one task routes many events in one transaction and sends them over one provider
connection, and the API skips a broker publish per request. A lost task only delays: the flag
expires after ROUTE_DOORBELL_SECONDS, and the sweeper routes whatever waits past its timeout.
"""

from __future__ import annotations

from django.conf import settings
from django.core.cache import cache


def _flag(traffic: str) -> str:
    return f"clarion:route-doorbell:{traffic}"


def ring(traffic: str) -> bool:
    """Publish a routing task for ``traffic`` unless one is waiting; True if it published."""
    from .enqueue import publish_route_waiting

    if not cache.add(_flag(traffic), 1, settings.ROUTE_DOORBELL_SECONDS):
        return False
    try:
        publish_route_waiting(traffic)
    except Exception:
        cache.delete(_flag(traffic))  # nothing waits: the next accept must ring again
        raise
    return True


def answer(traffic: str) -> None:
    """Called by the routing task before it reads what waits: later events ring again."""
    cache.delete(_flag(traffic))
