"""The hop after a failed delivery: the channel's backup providers, then its fallback channels.

A chain is the finite sequence [(channel, provider), ...]; each hop moves strictly forward
in it and is its own Delivery whose unique ``replaces`` points at the failed one, so a
chain never forks or loops.
"""

from __future__ import annotations

from channels.registry import provider_names

from .messages import BUILD_FAILED, RENDER_FAILED
from .models import Delivery, NotificationType


def chain(ntype: NotificationType, first_channel: str) -> list[tuple[str, str]]:
    hops: list[tuple[str, str]] = []
    for channel in [first_channel, *ntype.fallbacks.get(first_channel, [])]:
        for provider in provider_names(channel):
            if (channel, provider) not in hops:
                hops.append((channel, provider))
    return hops


def path_to(delivery: Delivery) -> list[Delivery]:
    """The chain's hops so far, from its first to this one."""
    path = [delivery]
    while path[-1].replaces_id is not None:
        path.append(path[-1].replaces)
    return path[::-1]


def hops_after(delivery: Delivery) -> list[tuple[str, str]]:
    """The rest of the delivery's chain, in order, less the hops it has already been through.

    The chain is read from today's settings: a provider since moved behind this one, or a
    retired one replaced, must not take the message a second time.
    """
    path = path_to(delivery)
    hops = chain(delivery.notification.type, path[0].channel)
    here = (delivery.channel, delivery.provider)
    if here in hops:
        rest = hops[hops.index(here) + 1 :]
    elif delivery.channel in (channels := [channel for channel, _ in hops]):
        # Its provider was retired from CHANNEL_PROVIDERS (an ESP switched): the channel's
        # current providers take over rather than the chain ending with nothing sent.
        rest = hops[channels.index(delivery.channel) :]
    else:
        return []
    used = {(hop.channel, hop.provider) for hop in path}
    return [hop for hop in rest if hop not in used]


def onward_hops(delivery: Delivery) -> list[tuple[str, str]]:
    """The hops a failed delivery may still take, in order.

    A channel the notification already reaches this recipient on (the type sends on it too)
    is passed over: a hop there would send the notification a second time.
    """
    rest = hops_after(delivery)
    if delivery.error_message.startswith((RENDER_FAILED, BUILD_FAILED)):
        # The same template and data would fail the same way with any of its providers.
        rest = [hop for hop in rest if hop[0] != delivery.channel]
    if delivery.is_test:
        # A staff member tests one channel's template: a backup provider may take it, another
        # channel's template is not what they asked to see.
        return [hop for hop in rest if hop[0] == delivery.channel]
    if all(channel == delivery.channel for channel, _ in rest):
        return rest
    reached = set(
        Delivery.objects.filter(
            notification_id=delivery.notification_id, recipient_id=delivery.recipient_id
        ).values_list("channel", flat=True)
    )
    return [hop for hop in rest if hop[0] == delivery.channel or hop[0] not in reached]
