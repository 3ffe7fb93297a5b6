"""Digests: fold what accumulated for a person into one message per category and channel.

Routing holds a digest item as a ``digested`` delivery (never sent on its own). At the
recipient's local morning (DIGEST_LOCAL_HOUR; weekly ones on DIGEST_WEEKDAY) the beat task
folds the items that arrived before that moment into one digest delivery of the category's
digest type (its own template per channel) and sends it on the ordinary send path. Nothing
accumulated, nothing sent. Each digest is unique per (recipient, category, channel, moment),
so overlapping runs never send it twice.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from datetime import datetime, time, timedelta

import redis
from django.conf import settings
from django.core.cache import cache
from django.db import transaction

from channels.registry import primary_provider
from notifications import clock, enqueue
from notifications.messages import MessageBuilder, summary_of
from notifications.models import Category, Delivery, Notification, NotificationType, Traffic

from .eligibility import DIGEST_TYPE_PREFIX, decide, zone_of
from .models import Frequency, Preference, TypeDefault

DIGEST_BATCH = 2000
# Pages of items a run looks through for due ones: past that, the next run goes on from
# where it stopped (the cursor, shared by every worker), then starts over at the end.
DIGEST_MAX_PAGES = 10
DIGEST_CURSOR = "clarion:digests:after"
DIGEST_API_KEY_ID = "clarion-digests"

FOOTER_HTML = (
    '<p style="font-size:12px;color:#52606d"><a href="{{ links.preferences_url }}">'
    '%s</a> &middot; <a href="{{ links.unsubscribe_url }}">%s</a><br>{{ links.postal_address }}</p>'
)
FOOTER_TEXT = (
    "\n%s: {{ links.preferences_url }}\n%s: {{ links.unsubscribe_url }}\n"
    "{{ links.postal_address }}\n"
)
LIST_HTML = (
    "<h1>{{ data.category_name }}</h1><ul>{% for entry in data.entries %}"
    "<li>{{ entry.summary }}</li>{% endfor %}</ul>"
)
LIST_TEXT = (
    "{{ data.category_name }}\n\n{% for entry in data.entries %}- {{ entry.summary }}\n{% endfor %}"
)
SUMMARIES = "{{ data.entries | map(attribute='summary') | join('; ') }}"


def _templates(
    words: tuple[str, str], preferences: str, unsubscribe: str
) -> dict[str, dict[str, str]]:
    one, many = words
    updates = f"{{% if data.count == 1 %}}{one}{{% else %}}{many}{{% endif %}}"
    return {
        "email": {
            "subject": f"{{{{ data.count }}}} {updates}: {{{{ data.category_name }}}}",
            "html": LIST_HTML + FOOTER_HTML % (preferences, unsubscribe),
            "text": LIST_TEXT + FOOTER_TEXT % (preferences, unsubscribe),
        },
        "sms": {
            "text": f"{{{{ data.count }}}} {updates}, {{{{ data.category_name }}}}: {SUMMARIES}"
        },
        "in_app": {
            "title": f"{{{{ data.count }}}} {updates}: {{{{ data.category_name }}}}",
            "body": SUMMARIES,
            "link": "",
        },
    }


# Each category's digest type starts with these; staff may edit them like any template.
DEFAULT_TEMPLATES = {
    "en": _templates(("update", "updates"), "Manage your preferences", "Unsubscribe"),
    "fr": _templates(("nouveauté", "nouveautés"), "Gérer vos préférences", "Se désabonner"),
}


def digest_type(category: Category, channels: list[str]) -> NotificationType:
    """The category's digest type, made with default templates the first time."""
    key = f"{DIGEST_TYPE_PREFIX}{category.key}"[:100]
    ntype, created = NotificationType.objects.get_or_create(
        key=key,
        defaults={
            "name": f"Digest: {category.name}"[:200],
            "description": "Daily or weekly digest of this category (made by Clarion).",
            "category": category,
            "traffic": Traffic.MARKETING,
            "channels": list(DEFAULT_TEMPLATES["en"]),
        },
    )
    if created:
        _add_default_templates(ntype)
    return ntype


def _add_default_templates(ntype: NotificationType) -> None:
    from templates_app.models import Template
    from templates_app.services import template_version_save

    for locale, channels in DEFAULT_TEMPLATES.items():
        for channel, content in channels.items():
            template = Template.objects.create(
                notification_type=ntype, channel=channel, locale=locale
            )
            template_version_save(template, content)


def last_moment(recipient, frequency: str, now: datetime) -> datetime:
    """The latest digest moment at or before ``now`` in the recipient's local time."""
    local = now.astimezone(zone_of(recipient))
    moment = datetime.combine(local.date(), time(settings.DIGEST_LOCAL_HOUR), local.tzinfo)
    if moment > local:
        moment -= timedelta(days=1)
    if frequency == Frequency.WEEKLY:
        while moment.weekday() != settings.DIGEST_WEEKDAY:
            moment -= timedelta(days=1)
    return moment


def send_digests(limit: int = DIGEST_BATCH) -> int:
    """Fold due digest items into digest deliveries and queue them; returns digests made."""
    now = clock.now()
    with transaction.atomic():
        groups: dict[tuple, list[Delivery]] = defaultdict(list)
        due, start = 0, _cursor()
        after, stop = start, None
        # Page past the items not yet due (a weekly backlog before its weekday), so they
        # never keep the due ones of a daily digest out of the run, nor out of the next.
        for _ in range(DIGEST_MAX_PAGES):
            if due >= limit:
                break
            items = Delivery.objects.filter(
                status=Delivery.Status.DIGESTED, digest__isnull=True, id__gt=after
            )
            if stop is not None:
                items = items.filter(id__lte=stop)
            page = list(
                items.select_for_update(skip_locked=True, of=("self",))
                .select_related("recipient", "notification__type__category")
                .order_by("id")[:limit]
            )
            if not page:
                after = 0
                if start == 0 or stop is not None:
                    break  # all looked through
                after, stop = 0, start  # the end: on from the start, up to where this began
                continue
            after = page[-1].id
            for key, item in _due(page, now):
                groups[key].append(item)
                due += 1
        made = [_fold(group, moment, period, now) for (*_, moment, period), group in groups.items()]
        made = [d for d in made if d is not None]
        enqueue.sends_on_commit((d.id, d.traffic, d.channel) for d in made)
    _move_cursor(after)
    return len(made)


def _cursor() -> int:
    try:
        return int(cache.get(DIGEST_CURSOR) or 0)
    except redis.RedisError:
        return 0  # from the start: slower through a backlog, never wrong


def _move_cursor(after: int) -> None:
    with contextlib.suppress(redis.RedisError):
        cache.set(DIGEST_CURSOR, after, timeout=None)


def _due(items: list[Delivery], now: datetime):
    """(digest key, item) for each item whose digest moment has come."""
    frequencies = _frequencies(items)
    defaults = dict(
        TypeDefault.objects.filter(
            notification_type__in={i.notification.type_id for i in items}
        ).values_list("notification_type_id", "frequency")
    )
    for item in items:
        category = item.notification.type.category
        frequency = frequencies.get(
            (item.recipient_id, category.id),
            defaults.get(item.notification.type_id, Frequency.DAILY),
        )
        if frequency not in (Frequency.DAILY, Frequency.WEEKLY):
            frequency = Frequency.DAILY  # switched back since: this morning's digest
        moment = last_moment(item.recipient, frequency, now)
        if item.status_changed_at and item.status_changed_at < moment:
            yield (item.recipient_id, category.id, item.channel, moment, frequency), item


def _frequencies(items: list[Delivery]) -> dict[tuple[int, int], str]:
    rows = Preference.objects.filter(
        recipient__in={i.recipient_id for i in items},
        category__in={i.notification.type.category_id for i in items},
        notification_type__isnull=True,
        channel="",
    ).values_list("recipient_id", "category_id", "frequency")
    return {(r, c): f for r, c, f in rows}


def _still_wanted(items: list[Delivery], now: datetime) -> tuple[list[Delivery], list[Delivery]]:
    """Items the person may still get, and those they opted out of since (skipped)."""
    keep, dropped = [], []
    for item in items:
        [decision] = decide(item.notification.type, [item.recipient], [item.channel], now)
        if decision.skip_reason:
            item.status, item.skip_reason, item.status_changed_at = (
                "skipped",
                decision.skip_reason,
                now,
            )
            dropped.append(item)
        else:
            keep.append(item)
    return keep, dropped


def _fold(items: list[Delivery], moment: datetime, period: str, now: datetime):
    items, dropped = _still_wanted(items, now)
    Delivery.objects.bulk_update(dropped, ["status", "skip_reason", "status_changed_at"])
    if not items:
        return None
    first = items[0]
    recipient, category, channel = first.recipient, first.notification.type.category, first.channel
    ntype = digest_type(category, [channel])
    builder = MessageBuilder()
    entries = [{"type": i.notification.type.key, "summary": _summary(builder, i)} for i in items]
    notification, _ = Notification.objects.get_or_create(
        api_key_id=DIGEST_API_KEY_ID,
        # One digest per fold: items of the same moment folded by a later run (past the run's
        # limit, or late) get a digest of their own, never one already sent.
        idempotency_key=(
            f"digest:{recipient.id}:{category.id}:{channel}:{moment.isoformat()}:{first.id}"
        ),
        defaults={
            "type": ntype,
            "data": {
                "category": category.key,
                "category_name": category.name,
                "period": period,
                "count": len(entries),
                "entries": entries,
            },
            "recipient_ids": [recipient.external_id],
            "status": Notification.Status.ROUTED,
            "routed_at": now,
        },
    )
    digest, _ = Delivery.objects.get_or_create(
        notification=notification,
        recipient=recipient,
        channel=channel,
        replaces=None,
        is_test=False,
        defaults={
            "traffic": Traffic.MARKETING,
            "provider": primary_provider(channel),
            "status_changed_at": now,
        },
    )
    Delivery.objects.filter(id__in=[i.id for i in items]).update(digest=digest, updated_at=now)
    return digest


def _summary(builder: MessageBuilder, item: Delivery) -> str:
    try:
        message, _ = builder.build(item)
    except Exception:  # noqa: BLE001 - a broken item template still gets a line in the digest
        return item.notification.type.name
    return summary_of(message.content) or item.notification.type.name
