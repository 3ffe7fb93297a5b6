"""One table of eligibility cases, run through every path that decides who gets what.

Each path takes the same case and answers one word: "send", "deferred", "digested", or the
skip reason. The per-event path routes a real notification and reads its Delivery row; the
audience path resolves the same choices in SQL over a Recipient queryset (broadcasts).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from notifications import clock
from notifications.models import Delivery, Notification, Recipient, Traffic
from notifications.routing import route_notifications
from preferences.eligibility import CapLedger, decide_audience
from preferences.models import ConsentLog, Suppression, TypeDefault
from preferences.services import Actor, preferences_update
from preferences.suppressions import suppression_add
from tests.factories import CategoryFactory, NotificationFactory, RecipientFactory

from .conftest import make_type, set_now

pytestmark = pytest.mark.django_db

M, T = Traffic.MARKETING, Traffic.TRANSACTIONAL
OFF = {"frequency": "off"}

CASES = [
    # id, traffic, setup, expected
    ("transactional plain", T, {}, "send"),
    ("transactional ignores all-marketing-off", T, {"prefs": {"marketing": False}}, "send"),
    ("transactional ignores category off", T, {"prefs": {"categories": {"c": OFF}}}, "send"),
    ("transactional ignores channel off", T, {"prefs": {"channels": {"email": False}}}, "send"),
    ("transactional honours a channel suppression", T, {"suppressed": "all"}, "suppressed"),
    ("transactional ignores a marketing suppression", T, {"suppressed": "marketing"}, "send"),
    ("transactional ignores quiet hours", T, {"quiet": True}, "send"),
    ("transactional ignores the cap", T, {"cap_reached": True}, "send"),
    ("marketing plain", M, {}, "send"),
    ("marketing, all marketing off", M, {"prefs": {"marketing": False}}, "opted_out_marketing"),
    ("marketing, channel off", M, {"prefs": {"channels": {"email": False}}}, "opted_out_channel"),
    ("marketing, another channel off", M, {"prefs": {"channels": {"sms": False}}}, "send"),
    ("marketing, category off", M, {"prefs": {"categories": {"c": OFF}}}, "opted_out_category"),
    (
        "marketing, category's channel off",
        M,
        {"prefs": {"categories": {"c": {"channels": {"email": False}}}}},
        "opted_out_category",
    ),
    ("marketing, type off", M, {"prefs": {"types": {"t": {"enabled": False}}}}, "opted_out_type"),
    (
        "marketing, type's channel off",
        M,
        {"prefs": {"types": {"t": {"channels": {"email": False}}}}},
        "opted_out_type",
    ),
    (
        "marketing, type kept in a category left",
        M,
        {"prefs": {"categories": {"c": OFF}, "types": {"t": {"enabled": True}}}},
        "send",
    ),
    (
        "marketing, all off beats a type kept",
        M,
        {"prefs": {"marketing": False, "types": {"t": {"enabled": True}}}},
        "opted_out_marketing",
    ),
    ("marketing, marketing suppression", M, {"suppressed": "marketing"}, "suppressed"),
    ("marketing, channel suppression", M, {"suppressed": "all"}, "suppressed"),
    ("no address", M, {"no_email": True}, "no_address"),
    ("erased", T, {"erased": True}, "erased"),
    (
        "marketing, daily digest",
        M,
        {"prefs": {"categories": {"c": {"frequency": "daily"}}}},
        "digested",
    ),
    (
        "marketing, weekly digest but its channel off",
        M,
        {"prefs": {"categories": {"c": {"frequency": "weekly", "channels": {"email": False}}}}},
        "opted_out_category",
    ),
    ("marketing in quiet hours", M, {"quiet": True}, "deferred"),
    ("marketing over the daily cap", M, {"cap_reached": True}, "capped"),
    ("opt-in type, nothing chosen", M, {"default": {"enabled": False}}, "not_opted_in"),
    (
        "opt-in type, its category turned on",
        M,
        {"default": {"enabled": False}, "prefs": {"categories": {"c": {"frequency": "instant"}}}},
        "send",
    ),
    (
        "opt-in type, the type turned on",
        M,
        {"default": {"enabled": False}, "prefs": {"types": {"t": {"enabled": True}}}},
        "send",
    ),
    ("opt-in default does not hold back transactional", T, {"default": {"enabled": False}}, "send"),
    ("type defaulting to a daily digest", M, {"default": {"frequency": "daily"}}, "digested"),
    (
        "type defaulting to a digest, person chose instant",
        M,
        {
            "default": {"frequency": "daily"},
            "prefs": {"categories": {"c": {"frequency": "instant"}}},
        },
        "send",
    ),
    (
        "marketing, digest is not capped",
        M,
        {"cap_reached": True, "prefs": {"categories": {"c": {"frequency": "daily"}}}},
        "digested",
    ),
]

NOW = datetime(2026, 12, 14, 23, 0, tzinfo=ZoneInfo("Europe/Paris"))


def arrange(traffic: str, setup: dict):
    """The case's world: a type "t" of category "c", one recipient, their choices."""
    set_now(NOW)
    category = CategoryFactory(key="c", name="C")
    ntype = make_type("t", traffic, category)
    person = RecipientFactory(
        external_id="p",
        email="" if setup.get("no_email") else "p@example.com",
        timezone="Europe/Paris",
    )
    if "default" in setup:
        TypeDefault.objects.create(notification_type=ntype, **setup["default"])
    actor = Actor(source=ConsentLog.Source.API)
    changes = dict(setup.get("prefs", {}))
    if setup.get("quiet"):
        changes["quiet_hours"] = {"start": "22:00", "end": "08:00"}
    if setup.get("cap_reached"):
        changes["daily_marketing_cap"] = 1
        earlier = NotificationFactory(type=make_type("other", M, category), recipient_ids=["p"])
        Delivery.objects.create(
            notification=earlier,
            recipient=person,
            channel="email",
            traffic=M,
            status="sent",
            status_changed_at=NOW,
            sent_at=NOW,
        )
    if changes:
        preferences_update(recipient=person, changes=changes, actor=actor)
    if "suppressed" in setup:
        suppression_add(
            channel="email",
            address="p@example.com",
            reason=Suppression.Reason.MANUAL,
            scope=setup["suppressed"],
        )
    if setup.get("erased"):
        person.erased_at = NOW
        person.save()
    return ntype, person


def per_event(ntype, person) -> str:
    notification = Notification.objects.create(type=ntype, recipient_ids=[person.external_id])
    route_notifications([str(notification.id)])
    delivery = Delivery.objects.get(notification=notification)
    if delivery.status == Delivery.Status.SKIPPED:
        return delivery.skip_reason
    # Transactional ones are claimed by routing itself (sending), marketing ones queued.
    return {"pending": "send", "sending": "send"}.get(delivery.status, delivery.status)


def audience(ntype, person) -> str:
    """The set-based form: choices resolved in SQL over a Recipient queryset, then the cap."""
    now = clock.now()
    broadcast = Notification.objects.create(type=ntype, audience={"all": True})
    [decision] = decide_audience(ntype, Recipient.objects.all(), "email", now)
    decision = CapLedger([person], now).admit(broadcast.id, decision, ntype.traffic)
    if decision.skip_reason:
        return decision.skip_reason
    if decision.digest:
        return "digested"
    return "deferred" if decision.defer_until and decision.defer_until > now else "send"


PATHS: dict[str, Callable] = {"per_event": per_event, "audience": audience}


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize(
    ("traffic", "setup", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_eligibility_case(path, traffic, setup, expected):
    ntype, person = arrange(traffic, setup)
    assert PATHS[path](ntype, person) == expected


def test_the_audience_form_costs_the_same_queries_for_10_or_300_people(promotions):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    ntype = make_type("blast", M, promotions)
    for i in range(300):
        RecipientFactory(external_id=f"a{i:03}")

    def queries(size: int) -> tuple[int, int]:
        people = Recipient.objects.filter(external_id__lt=f"a{size:03}")
        with CaptureQueriesContext(connection) as captured:
            decisions = list(decide_audience(ntype, people, "email", clock.now(), batch_size=500))
        return len(decisions), len(captured)

    (small, small_queries), (large, large_queries) = queries(10), queries(300)
    assert (small, large) == (10, 300)
    assert small_queries == large_queries
