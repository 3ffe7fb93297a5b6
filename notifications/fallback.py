"""The hop after a failed delivery: the channel's backup providers, then its fallback channels.

A chain is the finite sequence [(channel, provider), ...]; each hop moves strictly forward
in it and is its own Delivery whose unique ``replaces`` points at the failed one, so a
chain never forks or loops.
"""

from __future__ import annotations

from channels.registry import provider_names

from .models import Delivery, NotificationType


def chain(ntype: NotificationType, first_channel: str) -> list[tuple[str, str]]:
    hops: list[tuple[str, str]] = []
    for channel in [first_channel, *ntype.fallbacks.get(first_channel, [])]:
        for provider in provider_names(channel):
            if (channel, provider) not in hops:
                hops.append((channel, provider))
    return hops


def first_channel(delivery: Delivery) -> str:
    """The channel the chain started on (the first hop's channel)."""
    hop = delivery
    while hop.replaces_id is not None:
        hop = hop.replaces
    return hop.channel


def next_hop(delivery: Delivery) -> tuple[str, str] | None:
    hops = chain(delivery.notification.type, first_channel(delivery))
    try:
        position = hops.index((delivery.channel, delivery.provider))
    except ValueError:
        return None
    return hops[position + 1] if position + 1 < len(hops) else None
