"""Accepting events and upserting recipients: the writes the API, admin and tasks share."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import connection, transaction

from . import enqueue
from .bulk import Statement, insert_new, upsert_statement
from .models import Notification, Recipient
from .types import types_by_key

RECIPIENT_FIELDS = ("email", "phone", "webhook_url", "locale", "timezone", "attributes", "tags")


class AcceptError(Exception):
    """An event that cannot be accepted; nothing was stored for it."""

    def __init__(self, code: str, message: str, status: int = 400, fields: dict | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.fields = fields


@dataclass
class EventRequest:
    """One validated event, as the API or a service caller hands it over."""

    type_key: str
    recipients: list[str | dict[str, Any]]
    data: dict[str, Any] = field(default_factory=dict)
    idempotency_key: str | None = None
    send_at: datetime | None = None
    # Canonical JSON of what the caller sent: same key with another body is refused.
    fingerprint: str = ""
    # A broadcast names an audience (notifications/broadcasts.py) instead of recipients.
    audience: dict[str, Any] | None = None

    @property
    def external_ids(self) -> list[str]:
        return [r if isinstance(r, str) else r["external_id"] for r in self.recipients]

    @property
    def inline_recipients(self) -> list[dict[str, Any]]:
        return [r for r in self.recipients if isinstance(r, dict)]


@dataclass
class Accepted:
    notification: Notification | None
    created: bool = False
    error: AcceptError | None = None


def fingerprint(payload: Any) -> str:
    """SHA-256 of canonical JSON (sorted keys, no spaces): equal bodies, equal prints."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def recipients_upsert(rows: Iterable[dict[str, Any]]) -> None:
    """Create or update recipients by external_id; the fields each row gives, only those."""
    with transaction.atomic(), connection.cursor() as cursor:
        for statement in recipient_upserts(rows):
            cursor.execute(*statement)


def recipient_upserts(rows: Iterable[dict[str, Any]]) -> list[Statement]:
    """The statements of ``recipients_upsert``: one per set of given fields (usually one)."""
    by_fields: dict[tuple[str, ...], list[Recipient]] = {}
    merged: dict[str, dict[str, Any]] = {}
    for row in rows:  # the same person given twice: every field given is written
        merged.setdefault(row["external_id"], {}).update(row)
    # Sorted: two calls upserting the same people lock their rows in one order, never
    # in opposite orders (a deadlock).
    for _, row in sorted(merged.items()):
        given = tuple(sorted(f for f in RECIPIENT_FIELDS if f in row))
        by_fields.setdefault(given, []).append(
            Recipient(external_id=row["external_id"], **{f: row[f] for f in given})
        )
    return [
        upsert_statement(Recipient, objs, "external_id", [*given, "updated_at"] if given else [])
        for given, objs in by_fields.items()
    ]


def recipient_upsert(*, external_id: str, **fields: Any) -> tuple[Recipient, bool]:
    values = {f: fields[f] for f in RECIPIENT_FIELDS if f in fields}
    return Recipient.objects.update_or_create(external_id=external_id, defaults=values)


def notifications_accept(*, api_key_id: str, events: list[EventRequest]) -> list[Accepted]:
    """Accept many events in one atomic write; one result per event, in order.

    Rows are inserted with ON CONFLICT DO NOTHING: the unique (api key, idempotency key)
    constraint in PostgreSQL decides between concurrent duplicates, never a read-then-write.
    Routing is woken after commit (notifications/doorbell.py); if the broker is down the
    sweeper enqueues it later.
    """
    types = types_by_key(e.type_key for e in events)
    results: list[Accepted] = [Accepted(None) for _ in events]
    candidates: list[tuple[int, Notification]] = []
    used = _used_keys(api_key_id, events)
    errors = _errors(events, types, used)
    for index, event in enumerate(events):
        if index in errors:
            results[index] = Accepted(None, error=errors[index])
            continue
        candidates.append((index, _new_notification(api_key_id, event, types[event.type_key])))
    writers, _ = _split(events, errors, used)
    inline = (r for i in writers for r in events[i].inline_recipients)
    # The inline recipients and the notifications are written in one atomic step.
    created_ids = insert_new(
        Notification, [n for _, n in candidates], first=recipient_upserts(inline)
    )
    existing = _existing_by_key(api_key_id, [n for _, n in candidates if n.id not in created_ids])
    fresh: list[Notification] = []
    for index, notification in candidates:
        if notification.id in created_ids:
            results[index] = Accepted(notification, created=True)
            fresh.append(notification)
        else:
            results[index] = _replay(existing.get(notification.idempotency_key), notification)
    enqueue.wake_routing_on_commit(fresh)
    return results


def notification_accept(*, api_key_id: str, event: EventRequest) -> Accepted:
    return notifications_accept(api_key_id=api_key_id, events=[event])[0]


def _errors(events: list[EventRequest], types: dict, used: set[str]) -> dict[int, AcceptError]:
    """Why each refused event is refused, by index.

    An event may name recipients that exist, or that an event of the call writes inline
    (see ``_split``): a refused event or a replay writes nothing, so the people it gives
    inline count for no one. Refusing one can leave another without its recipient, or hand
    its idempotency key (and the right to write its people) to a later one: every event is
    checked afresh until the answers settle. Should they not, refusals only add up from
    then on, which always ends.
    """
    referenced = {i for e in events for i in e.external_ids}
    in_database: set[str] = set()
    asked: set[str] = set()
    errors: dict[int, AcceptError] = {}
    rounds = 0
    while True:
        rounds += 1
        writers, replays = _split(events, errors, used)
        inline = {r["external_id"] for index in writers for r in events[index].inline_recipients}
        if ask := referenced - inline - asked:
            asked |= ask
            in_database |= set(
                Recipient.objects.filter(external_id__in=ask).values_list("external_id", flat=True)
            )
        known = inline | in_database
        found = {
            index: error
            for index, event in enumerate(events)
            if (error := _check(event, types, known, index in replays))
        }
        if rounds <= len(events) + 1:
            if found.keys() == errors.keys():
                return found
            errors = found
        elif found.keys() <= errors.keys():
            return errors
        else:
            errors |= found


def _split(events: list[EventRequest], errors: dict, used: set[str]) -> tuple[list[int], set[int]]:
    """The events that write their inline recipients (accepted, and the first with their
    idempotency key), and those that replay a key taken before them (by an earlier
    request, or an earlier event of the call): the key's first body decides their answer."""
    taken = set(used)
    writers, replays = [], set()
    for index, event in enumerate(events):
        key = event.idempotency_key
        if key and key in taken:
            replays.add(index)
        elif index not in errors:
            if key:
                taken.add(key)
            writers.append(index)
    return writers, replays


def _used_keys(api_key_id: str, events: list[EventRequest]) -> set[str]:
    """Idempotency keys already used, of events giving recipients inline.

    A replay writes none of its inline recipients: the first request wrote them, and a
    refused one (another body) must change nothing. Asked before the write, so two first
    requests racing with one key may both write theirs; the unique key then decides which
    notification stands.
    """
    keys = [e.idempotency_key for e in events if e.idempotency_key and e.inline_recipients]
    if not keys:
        return set()
    return set(
        Notification.objects.filter(api_key_id=api_key_id, idempotency_key__in=keys).values_list(
            "idempotency_key", flat=True
        )
    )


def _check(
    event: EventRequest, types: dict, known: set[str], replay: bool = False
) -> AcceptError | None:
    ntype = types.get(event.type_key)
    if ntype is None or not ntype.is_active:
        return AcceptError(
            "unknown_notification_type",
            f"No active notification type has the key {event.type_key!r}.",
            fields={"type": ["Unknown notification type."]},
        )
    if event.audience is not None or replay:
        return None
    missing = sorted(set(event.external_ids) - known)
    if missing:
        return AcceptError(
            "unknown_recipient",
            "Some recipients are unknown: send them inline with their contact fields, or "
            "create them with PUT /api/v1/recipients/{external_id}/ first.",
            fields={"recipients": [f"Unknown external_id: {m}" for m in missing[:20]]},
        )
    return None


def _new_notification(api_key_id: str, event: EventRequest, ntype) -> Notification:
    return Notification(
        id=uuid.uuid4(),
        type=ntype,
        traffic=ntype.traffic,
        api_key_id=api_key_id,
        idempotency_key=event.idempotency_key,
        fingerprint=event.fingerprint,
        data=event.data,
        recipient_ids=list(dict.fromkeys(event.external_ids)),
        audience=event.audience,
        send_at=event.send_at,
    )


def _existing_by_key(api_key_id: str, conflicted: list[Notification]) -> dict[str, Notification]:
    keys = [n.idempotency_key for n in conflicted if n.idempotency_key]
    if not keys:
        return {}
    rows = Notification.objects.filter(api_key_id=api_key_id, idempotency_key__in=keys)
    return {n.idempotency_key: n for n in rows}


def _replay(existing: Notification | None, attempted: Notification) -> Accepted:
    if existing is None:
        # The conflicting row vanished (its transaction rolled back): the caller may retry.
        return Accepted(
            None,
            error=AcceptError(
                "idempotency_key_in_use",
                "A request with this Idempotency-Key is still being processed; retry.",
                status=409,
            ),
        )
    # An event's key does not replay as a broadcast, nor the other way round.
    if (existing.fingerprint, existing.is_broadcast) != (
        attempted.fingerprint,
        attempted.is_broadcast,
    ):
        return Accepted(
            None,
            error=AcceptError(
                "idempotency_key_reused",
                "This Idempotency-Key was already used with a different request body.",
                status=422,
            ),
        )
    return Accepted(existing, created=False)
