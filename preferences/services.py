"""Changing what a person receives: every write records who did it in the consent log."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import time
from typing import Any

from django.db import transaction

from notifications.models import Category, Channel, NotificationType, Recipient, Traffic

from .eligibility import DIGEST_TYPE_PREFIX
from .models import ConsentLog, Frequency, Preference, QuietHours, TypeDefault

CHANNELS = [c.value for c in Channel]
FREQUENCIES = [f.value for f in Frequency]
MAX_DAILY_CAP = 1000  # more is no cap at all; the column holds at most 32,767


class PreferenceError(Exception):
    """A change that names something unknown or malformed; nothing was written."""

    def __init__(self, fields: dict[str, Any]):
        super().__init__("invalid preference change")
        self.fields = fields


@dataclass(frozen=True)
class Actor:
    """Who or what made a change, as the consent log records it."""

    source: str
    name: str = ""
    ip: str | None = None
    user_agent: str = ""

    @classmethod
    def from_request(cls, request, source: str, name: str = "") -> Actor:
        user = getattr(request, "user", None)
        if not name and user is not None and user.is_authenticated:
            name = user.get_username()
        return cls(
            source=source,
            name=name[:255],
            ip=_ip(request.META.get("REMOTE_ADDR")),
            # Whatever a client sends: no NUL (PostgreSQL refuses it), no more than the column.
            user_agent=request.META.get("HTTP_USER_AGENT", "").replace("\x00", "")[:512],
        )


def _ip(value: str | None) -> str | None:
    """The client's IP address as the consent log stores it; None when it is not one."""
    try:
        return str(ipaddress.ip_address(value)) if value else None
    except ValueError:
        return None


def consent_log(
    *, recipient: Recipient | None, actor: Actor, action: str, before=None, after=None
) -> ConsentLog:
    return ConsentLog.objects.create(
        recipient=recipient,
        source=actor.source,
        actor=actor.name,
        action=action,
        ip_address=actor.ip,
        user_agent=actor.user_agent,
        before=before,
        after=after,
    )


# --- Reading ------------------------------------------------------------------------------


def marketing_categories() -> list[tuple[Category, list[str]]]:
    """Categories a person can opt out of (they hold marketing types), with their channels."""
    channels_by_category: dict[int, list[str]] = {}
    # Digest types are Clarion's own; their channels are not a choice of their own.
    types = NotificationType.objects.filter(traffic=Traffic.MARKETING, is_active=True).exclude(
        key__startswith=DIGEST_TYPE_PREFIX
    )
    for category_id, channels in types.values_list("category_id", "channels"):
        known = channels_by_category.setdefault(category_id, [])
        known.extend(c for c in channels if c not in known)
    categories = Category.objects.filter(id__in=channels_by_category).order_by("name")
    return [(c, [ch for ch in CHANNELS if ch in channels_by_category[c.id]]) for c in categories]


def category_default_frequencies() -> dict[int, str]:
    """What a category shows for people who chose nothing: "off" when every one of its
    marketing types is opt-in, else the default cadence its types share (else instant)."""
    by_category: dict[int, list[tuple[bool, str]]] = {}
    types = NotificationType.objects.filter(traffic=Traffic.MARKETING, is_active=True).exclude(
        key__startswith=DIGEST_TYPE_PREFIX
    )
    defaults = {
        d.notification_type_id: (d.enabled, d.frequency)
        for d in TypeDefault.objects.filter(notification_type__in=types)
    }
    for type_id, category_id in types.values_list("id", "category_id"):
        by_category.setdefault(category_id, []).append(
            defaults.get(type_id, (True, Frequency.INSTANT.value))
        )
    result = {}
    for category_id, entries in by_category.items():
        enabled = {frequency for on, frequency in entries if on}
        if not enabled:
            result[category_id] = Frequency.OFF.value
        else:
            result[category_id] = enabled.pop() if len(enabled) == 1 else Frequency.INSTANT.value
    return result


def preferences_snapshot(recipient: Recipient) -> dict[str, Any]:
    """Everything a person chose, as plain data (the API's and the consent log's shape)."""
    rows = list(
        Preference.objects.filter(recipient=recipient).select_related(
            "category", "notification_type"
        )
    )
    marketing = True
    channels = dict.fromkeys(CHANNELS, True)
    starting = category_default_frequencies()
    categories: dict[str, dict] = {
        c.key: {
            "frequency": starting.get(c.id, Frequency.INSTANT.value),
            "channels": dict.fromkeys(chs, True),
        }
        for c, chs in marketing_categories()
    }
    types: dict[str, dict] = {}
    for row in rows:
        if row.category is not None:
            entry = categories.setdefault(
                row.category.key, {"frequency": Frequency.INSTANT.value, "channels": {}}
            )
            if row.channel:
                entry["channels"][row.channel] = row.enabled
            else:
                entry["frequency"] = row.frequency if row.enabled else Frequency.OFF.value
        elif row.notification_type is not None:
            entry = types.setdefault(row.notification_type.key, {"channels": {}})
            if row.channel:
                entry["channels"][row.channel] = row.enabled
            else:
                entry["enabled"] = row.enabled
        elif row.channel:
            channels[row.channel] = row.enabled
        else:
            marketing = row.enabled
    quiet = QuietHours.objects.filter(recipient=recipient).first()
    return {
        "marketing": marketing,
        "channels": channels,
        "categories": categories,
        "types": types,
        "quiet_hours": (
            {"start": quiet.start.strftime("%H:%M"), "end": quiet.end.strftime("%H:%M")}
            if quiet and quiet.start and quiet.end
            else None
        ),
        "daily_marketing_cap": quiet.daily_marketing_cap if quiet else None,
    }


# --- Writing ------------------------------------------------------------------------------


def _set(recipient: Recipient, *, category=None, ntype=None, channel: str = "", **values) -> None:
    Preference.objects.update_or_create(
        recipient=recipient,
        category=category,
        notification_type=ntype,
        channel=channel,
        defaults=values,
    )


def _flag(value: Any, path: str, errors: dict) -> bool | None:
    if not isinstance(value, bool):
        errors[path] = ["Must be true or false."]
        return None
    return value


def _channel_flags(value: Any, path: str, errors: dict, allowed=CHANNELS) -> dict[str, bool]:
    if not isinstance(value, dict):
        errors[path] = ["Must be an object of channel: true|false."]
        return {}
    flags = {}
    for channel, flag in value.items():
        if channel not in allowed:
            errors[f"{path}.{channel}"] = [f"Unknown channel; one of {', '.join(allowed)}."]
        elif _flag(flag, f"{path}.{channel}", errors) is not None:
            flags[channel] = flag
    return flags


def _time(value: Any, path: str, errors: dict) -> time | None:
    try:
        hours, minutes = str(value).split(":")
        return time(int(hours), int(minutes))
    except (ValueError, TypeError, OverflowError):
        errors[path] = ["A local time as HH:MM."]
        return None


_KEYS = {"marketing", "channels", "categories", "types", "quiet_hours", "daily_marketing_cap"}


def _plan(changes: dict[str, Any]) -> list[tuple]:
    """Validate a change set and turn it into writes; raises PreferenceError, writes nothing."""
    errors: dict[str, Any] = {}
    writes: list[tuple] = []
    if not isinstance(changes, dict):
        raise PreferenceError({"non_field_errors": ["Must be an object."]})
    for key in set(changes) - _KEYS:
        errors[key] = ["Unknown field."]
    if "marketing" in changes and _flag(changes["marketing"], "marketing", errors) is not None:
        writes.append(("pref", {}, {"enabled": changes["marketing"]}))
    for channel, flag in _channel_flags(changes.get("channels", {}), "channels", errors).items():
        writes.append(("pref", {"channel": channel}, {"enabled": flag}))
    writes += _plan_categories(changes.get("categories", {}), errors)
    writes += _plan_types(changes.get("types", {}), errors)
    writes += _plan_quiet(changes, errors)
    if errors:
        raise PreferenceError(errors)
    return writes


def _plan_categories(value: Any, errors: dict) -> list[tuple]:
    if not isinstance(value, dict):
        errors["categories"] = ["Must be an object keyed by category key."]
        return []
    known = {c.key: c for c in Category.objects.filter(key__in=list(value))}
    writes = []
    for key, change in value.items():
        path = f"categories.{key}"
        if key not in known:
            errors[path] = ["Unknown category."]
            continue
        if not isinstance(change, dict) or set(change) - {"frequency", "channels"}:
            errors[path] = ['An object with "frequency" and/or "channels".']
            continue
        category = known[key]
        if "frequency" in change:
            frequency = change["frequency"]
            if frequency not in FREQUENCIES:
                errors[f"{path}.frequency"] = [f"One of {', '.join(FREQUENCIES)}."]
            else:
                enabled = frequency != Frequency.OFF
                writes.append(
                    ("pref", {"category": category}, {"enabled": enabled, "frequency": frequency})
                )
        for channel, flag in _channel_flags(
            change.get("channels", {}), f"{path}.channels", errors
        ).items():
            writes.append(("pref", {"category": category, "channel": channel}, {"enabled": flag}))
    return writes


def _plan_types(value: Any, errors: dict) -> list[tuple]:
    if not isinstance(value, dict):
        errors["types"] = ["Must be an object keyed by notification type key."]
        return []
    known = {t.key: t for t in NotificationType.objects.filter(key__in=list(value))}
    writes = []
    for key, change in value.items():
        path = f"types.{key}"
        if key not in known:
            errors[path] = ["Unknown notification type."]
            continue
        if not isinstance(change, dict) or set(change) - {"enabled", "channels"}:
            errors[path] = ['An object with "enabled" and/or "channels".']
            continue
        ntype = known[key]
        if "enabled" in change and _flag(change["enabled"], f"{path}.enabled", errors) is not None:
            writes.append(("pref", {"ntype": ntype}, {"enabled": change["enabled"]}))
        for channel, flag in _channel_flags(
            change.get("channels", {}), f"{path}.channels", errors
        ).items():
            writes.append(("pref", {"ntype": ntype, "channel": channel}, {"enabled": flag}))
    return writes


def _plan_quiet(changes: dict, errors: dict) -> list[tuple]:
    writes = []
    if "quiet_hours" in changes:
        quiet = changes["quiet_hours"]
        if quiet is None:
            writes.append(("quiet", {"start": None, "end": None}))
        elif isinstance(quiet, dict) and set(quiet) == {"start", "end"}:
            start = _time(quiet["start"], "quiet_hours.start", errors)
            end = _time(quiet["end"], "quiet_hours.end", errors)
            if start is not None and end is not None:
                if start == end:
                    errors["quiet_hours"] = ["Start and end must differ."]
                writes.append(("quiet", {"start": start, "end": end}))
        else:
            errors["quiet_hours"] = ['null, or {"start": "HH:MM", "end": "HH:MM"}.']
    if "daily_marketing_cap" in changes:
        cap = changes["daily_marketing_cap"]
        if cap is not None and (
            isinstance(cap, bool) or not isinstance(cap, int) or not 0 <= cap <= MAX_DAILY_CAP
        ):
            errors["daily_marketing_cap"] = [
                f"null, or a whole number of messages from 0 to {MAX_DAILY_CAP}."
            ]
        else:
            writes.append(("quiet", {"daily_marketing_cap": cap}))
    return writes


def _types_leaving_with_their_category(recipient: Recipient, writes: list[tuple]) -> list[tuple]:
    """Writes turning off, with a category (or one of its channels), the person's own rows
    that turned on marketing types of it.

    A type's row decides before its category's, so on a page that shows only categories
    (the preference center, a one-click unsubscribe) "off" would otherwise leave those
    types coming.
    """
    leaving = [
        (scope["category"].id, scope.get("channel", ""))
        for kind, scope, *values in writes
        if kind == "pref" and "category" in scope and not values[0]["enabled"]
    ]
    if not leaving:
        return []
    turned_on = Preference.objects.filter(
        recipient=recipient,
        enabled=True,
        notification_type__category_id__in={category for category, _ in leaving},
        notification_type__traffic=Traffic.MARKETING,
    ).select_related("notification_type")
    off: dict[tuple, NotificationType] = {}
    for row in turned_on:
        ntype = row.notification_type
        for category, channel in leaving:
            if ntype.category_id != category:
                continue
            if not channel:
                off[(ntype.id, row.channel)] = ntype
            elif row.channel in ("", channel):
                off[(ntype.id, channel)] = ntype
    return [("pref", {"ntype": t, "channel": ch}, {"enabled": False}) for (_, ch), t in off.items()]


def preferences_update(
    *,
    recipient: Recipient,
    changes: dict[str, Any],
    actor: Actor,
    action: str = "update",
    whole_categories: bool = False,
) -> dict[str, Any]:
    """Apply a partial change set (the API's PATCH shape); logs before and after.

    ``whole_categories``: a category turned off also turns off the types of it the person
    turned on one by one (pages that show no types); the API does exactly what it is told.
    """
    writes = _plan(changes)
    with transaction.atomic():
        Recipient.objects.select_for_update().filter(pk=recipient.pk).first()
        if whole_categories:
            writes += _types_leaving_with_their_category(recipient, writes)
        before = preferences_snapshot(recipient)
        for write in writes:
            if write[0] == "pref":
                _, scope, values = write
                _set(recipient, **scope, **values)
            else:
                QuietHours.objects.update_or_create(recipient=recipient, defaults=write[1])
        after = preferences_snapshot(recipient)
        if after != before:
            consent_log(recipient=recipient, actor=actor, action=action, before=before, after=after)
    return after


def unsubscribe_category(
    *, recipient: Recipient, category: Category, actor: Actor
) -> dict[str, Any]:
    """Stop every marketing message of one category (the one-click unsubscribe)."""
    return preferences_update(
        recipient=recipient,
        changes={"categories": {category.key: {"frequency": Frequency.OFF.value}}},
        actor=actor,
        action="unsubscribe_category",
        whole_categories=True,
    )


def unsubscribe_all_marketing(*, recipient: Recipient, actor: Actor) -> dict[str, Any]:
    """Stop all marketing; transactional messages (password resets) still go out."""
    return preferences_update(
        recipient=recipient,
        changes={"marketing": False},
        actor=actor,
        action="unsubscribe_all_marketing",
    )
