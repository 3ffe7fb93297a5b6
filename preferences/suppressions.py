"""Add and lift suppressions (bounces, complaints, SMS STOP, manual)."""

from __future__ import annotations

from django.db import transaction

from .addresses import address_hash, normalize
from .models import ConsentLog, Suppression


def suppression_add(
    *,
    channel: str,
    address: str,
    reason: str,
    scope: str = Suppression.Scope.ALL,
    source: str = "",
    log_source: str = ConsentLog.Source.SYSTEM,
    recipient=None,
) -> Suppression:
    """Suppress an address; idempotent (a replayed bounce or STOP adds nothing)."""
    with transaction.atomic():
        suppression, created = Suppression.objects.get_or_create(
            channel=channel,
            address_hash=address_hash(channel, address),
            scope=scope,
            defaults={"address": normalize(channel, address), "reason": reason, "source": source},
        )
        if created:
            ConsentLog.objects.create(
                recipient=recipient,
                source=log_source,
                actor=source,
                action="suppress",
                after={"channel": channel, "scope": scope, "reason": reason},
            )
    return suppression


def suppression_remove(
    *,
    channel: str,
    address: str,
    scope: str = Suppression.Scope.ALL,
    source: str = "",
    log_source: str = ConsentLog.Source.SYSTEM,
    recipient=None,
    reason: str | None = None,
) -> bool:
    """Lift a suppression; with ``reason``, only one made for that reason (START lifts STOP)."""
    suppressions = Suppression.objects.filter(
        channel=channel, address_hash=address_hash(channel, address), scope=scope
    )
    if reason is not None:
        suppressions = suppressions.filter(reason=reason)
    deleted, _ = suppressions.delete()
    if deleted:
        ConsentLog.objects.create(
            recipient=recipient,
            source=log_source,
            actor=source,
            action="unsuppress",
            before={"channel": channel, "scope": scope},
        )
    return bool(deleted)
