"""End-user pages reached from links in messages: no account, a signed token instead."""

from __future__ import annotations

import json

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import translation
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from .models import ConsentLog, Frequency
from .services import (
    Actor,
    PreferenceError,
    marketing_categories,
    preferences_snapshot,
    preferences_update,
    unsubscribe_all_marketing,
    unsubscribe_category,
)
from .tokens import PREFERENCES, UNSUBSCRIBE, BadToken, Grant, make_token, read_token

ONE_CLICK_BODY = ("List-Unsubscribe", "One-Click")
FREQUENCIES = frozenset(f.value for f in Frequency)


def _language(locale: str) -> str:
    language = (locale or "").replace("_", "-").split("-")[0].lower()
    return language if language in dict(settings.LANGUAGES) else settings.LANGUAGE_CODE


def _bad_token(request: HttpRequest, error: BadToken) -> HttpResponse:
    # Altered or unknown: 400. Too old: 403 (it was genuine, it may no longer be used).
    status = 403 if error.reason == "expired" else 400
    return render(request, "preferences/bad_token.html", {"reason": error.reason}, status=status)


def _grant(request: HttpRequest, token: str, scope: str) -> Grant | HttpResponse:
    try:
        return read_token(token, scope)
    except BadToken as error:
        return _bad_token(request, error)


def _rows(snapshot: dict) -> list[dict]:
    rows = []
    for category, channels in marketing_categories():
        chosen = snapshot["categories"].get(category.key, {})
        rows.append(
            {
                "key": category.key,
                "name": category.name,
                "description": category.description,
                "frequency": chosen.get("frequency", Frequency.INSTANT),
                "channels": [
                    {"key": ch, "on": chosen.get("channels", {}).get(ch, True)} for ch in channels
                ],
            }
        )
    return rows


def _shown_state(snapshot: dict, rows: list[dict]) -> str:
    """What the page shows, sent back with the form (see ``_as_shown``)."""
    return json.dumps(
        {
            "marketing": snapshot["marketing"],
            "quiet_hours": snapshot["quiet_hours"],
            "categories": {
                row["key"]: {
                    "frequency": row["frequency"],
                    "channels": {c["key"]: c["on"] for c in row["channels"]},
                }
                for row in rows
            },
        },
        separators=(",", ":"),
    )


def _as_shown(post, snapshot: dict, rows: list[dict]) -> tuple[dict, list[dict]]:
    """The state the posted page showed, as ``(snapshot, rows)``.

    A form is compared with what its page showed, not with what is stored now: an
    unsubscribe (a one-click from the inbox, say) between showing the page and saving it
    stays, unless the person changed that very choice on the page. Categories and channels
    the page did not show are left alone. A page without its shown state (one served before
    it carried it) is compared with what is stored now.
    """
    try:
        shown = json.loads(post.get("shown", ""))
        categories = shown["categories"]
        marketing, quiet = shown["marketing"], shown["quiet_hours"]
        if not (isinstance(categories, dict) and isinstance(marketing, bool)):
            raise TypeError
        if quiet is not None and not (
            isinstance(quiet, dict) and all(isinstance(quiet.get(k), str) for k in ("start", "end"))
        ):
            raise TypeError
    except (ValueError, TypeError, KeyError, RecursionError):  # RecursionError: "[[[[..."
        return snapshot, rows
    as_shown = []
    for row in rows:
        if row["key"] not in categories:
            continue  # not on the page: a category added since
        seen = categories[row["key"]]
        if not (
            isinstance(seen, dict)
            and isinstance(seen.get("channels"), dict)
            and isinstance(seen.get("frequency"), str)
            and seen["frequency"] in FREQUENCIES
        ):
            as_shown.append(row)  # unreadable: compared with what is stored, as before
            continue
        channels = [
            {"key": c["key"], "on": seen["channels"][c["key"]]}
            for c in row["channels"]
            if isinstance(seen["channels"].get(c["key"]), bool)
        ]
        as_shown.append({**row, "channels": channels, "frequency": seen["frequency"]})
    return {**snapshot, "marketing": marketing, "quiet_hours": quiet}, as_shown


def _changes_from_form(post, snapshot: dict, rows: list[dict]) -> dict:
    """What the person changed on the page, and nothing else.

    A value the page showed and got back is not written: an explicit "instant" for a
    category would opt into its opt-in types, and consent must be a choice, not a save.
    """
    categories = {}
    for row in rows:
        change: dict = {}
        ticked = {c["key"]: f"channel-{row['key']}-{c['key']}" in post for c in row["channels"]}
        if channels := {
            c["key"]: ticked[c["key"]] for c in row["channels"] if ticked[c["key"]] != c["on"]
        }:
            change["channels"] = channels
        frequency = post.get(f"frequency-{row['key']}")
        if frequency in FREQUENCIES and frequency != row["frequency"]:
            change["frequency"] = frequency
        if change:
            categories[row["key"]] = change
    changes: dict = {"categories": categories} if categories else {}
    marketing = "all_marketing_off" not in post
    if marketing != snapshot["marketing"]:
        changes["marketing"] = marketing
    start, end = post.get("quiet_start", "").strip(), post.get("quiet_end", "").strip()
    if "quiet_start" in post or "quiet_end" in post:
        quiet = {"start": start, "end": end} if start or end else None
        if quiet != snapshot["quiet_hours"]:
            changes["quiet_hours"] = quiet
    return changes


# Personal pages: never cached by a browser or a proxy.
@never_cache
@require_http_methods(["GET", "POST"])
def preference_center(request: HttpRequest, token: str) -> HttpResponse:
    grant = _grant(request, token, PREFERENCES)
    if isinstance(grant, HttpResponse):
        return grant
    recipient = grant.recipient
    with translation.override(_language(recipient.locale)):
        snapshot = preferences_snapshot(recipient)
        rows = _rows(snapshot)
        invalid = False
        if request.method == "POST":
            try:
                preferences_update(
                    recipient=recipient,
                    changes=_changes_from_form(
                        request.POST, *_as_shown(request.POST, snapshot, rows)
                    ),
                    actor=Actor.from_request(request, ConsentLog.Source.PREFERENCE_CENTER),
                    whole_categories=True,
                )
            except PreferenceError:
                invalid = True
            else:
                # Post/redirect/get: a reload never posts twice.
                return redirect(f"{request.path}?saved=1")
        quiet = snapshot["quiet_hours"] or {}
        return render(
            request,
            "preferences/center.html",
            {
                "rows": rows,
                "shown": _shown_state(snapshot, rows),
                "all_marketing_off": not snapshot["marketing"],
                "frequencies": Frequency.choices,
                "quiet_start": quiet.get("start", ""),
                "quiet_end": quiet.get("end", ""),
                "timezone": recipient.timezone or "UTC",
                "saved": request.GET.get("saved") == "1" and not invalid,
                "invalid": invalid,
                "language": translation.get_language(),
                "postal_address": settings.SENDER_POSTAL_ADDRESS,
            },
            status=400 if invalid else 200,
        )


@csrf_exempt  # RFC 8058: mail providers POST without cookies or tokens; this view alone.
@never_cache
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    """GET shows a confirmation (scanners follow links); POST unsubscribes, 200, no redirect."""
    grant = _grant(request, token, UNSUBSCRIBE)
    if isinstance(grant, HttpResponse):
        return grant
    recipient, category = grant.recipient, grant.category
    with translation.override(_language(recipient.locale)):
        context = {
            "category": category,
            "preferences_path": reverse(
                "preferences:center", args=[make_token(recipient, PREFERENCES)]
            ),
            "language": translation.get_language(),
            "postal_address": settings.SENDER_POSTAL_ADDRESS,
        }
        if request.method == "GET":
            return render(request, "preferences/unsubscribe_confirm.html", context)
        one_click = request.POST.get(ONE_CLICK_BODY[0]) == ONE_CLICK_BODY[1]
        if not one_click and request.POST.get("confirm") != "1":
            return render(request, "preferences/unsubscribe_confirm.html", context, status=400)
        source = ConsentLog.Source.ONE_CLICK if one_click else ConsentLog.Source.PREFERENCE_CENTER
        actor = Actor.from_request(request, source)
        if category is None:
            unsubscribe_all_marketing(recipient=recipient, actor=actor)
        else:
            unsubscribe_category(recipient=recipient, category=category, actor=actor)
        return render(request, "preferences/unsubscribed.html", context)
