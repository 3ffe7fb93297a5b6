"""Add and lift suppressions (bounces, complaints, SMS STOP, manual), each in the consent log."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction

from .addresses import address_hash, normalize
from .models import ConsentLog, Suppression
from .services import Actor, consent_log

SYSTEM = Actor(source=ConsentLog.Source.SYSTEM)


def suppression_add(
    *,
    channel: str,
    address: str,
    reason: str,
    actor: Actor = SYSTEM,
    scope: str = Suppression.Scope.ALL,
    source: str = "",
    recipient=None,
) -> Suppression:
    """Suppress an address; idempotent (a replayed bounce or STOP adds nothing).

    ``source`` is what the suppression came from, kept on it (an ESP's name, "twilio");
    it defaults to the actor's name.
    """
    with transaction.atomic():
        suppression, created = Suppression.objects.get_or_create(
            channel=channel,
            address_hash=address_hash(channel, address),
            scope=scope,
            defaults={
                "address": normalize(channel, address),
                "reason": reason,
                "source": (source or actor.name)[:64],
            },
        )
        if created:
            consent_log(
                recipient=recipient,
                actor=actor,
                action="suppress",
                after={"channel": channel, "scope": scope, "reason": reason},
            )
    return suppression


def suppression_remove(
    *,
    channel: str,
    address: str,
    actor: Actor = SYSTEM,
    scope: str = Suppression.Scope.ALL,
    recipient=None,
    reason: str | None = None,
) -> bool:
    """Lift a suppression; with ``reason``, only one made for that reason (START lifts STOP)."""
    suppressions = Suppression.objects.filter(
        channel=channel, address_hash=address_hash(channel, address), scope=scope
    )
    if reason is not None:
        suppressions = suppressions.filter(reason=reason)
    return suppressions_lift(suppressions, actor=actor, recipient=recipient) > 0


def suppressions_lift(suppressions: Iterable[Suppression], *, actor: Actor, recipient=None) -> int:
    """Delete these suppressions, logging each one lifted; returns how many."""
    lifted = 0
    with transaction.atomic():
        for suppression in suppressions:
            deleted, _ = Suppression.objects.filter(pk=suppression.pk).delete()
            if not deleted:  # lifted meanwhile by someone else, who logged it
                continue
            lifted += 1
            consent_log(
                recipient=recipient,
                actor=actor,
                action="unsuppress",
                before={
                    "channel": suppression.channel,
                    "scope": suppression.scope,
                    "reason": suppression.reason,
                },
            )
    return lifted
