"""Every way a choice or a suppression changes leaves a consent log row saying who did it."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from preferences.models import ConsentLog, Preference, Suppression
from preferences.suppressions import suppression_add, suppression_remove

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(db):
    user = get_user_model().objects.create_superuser("staff", "staff@example.org", "pw")
    client = Client(HTTP_USER_AGENT="StaffBrowser/1")
    client.force_login(user)
    return client


def test_an_admin_preference_change_is_logged_with_before_and_after(staff, ada, promotions):
    add = staff.post(
        "/admin/preferences/preference/add/",
        {
            "recipient": ada.pk,
            "category": promotions.pk,
            "channel": "",
            "frequency": "daily",
            "enabled": "on",
        },
    )
    assert add.status_code == 302, add.content[:400]
    pref = Preference.objects.get()
    staff.post(
        f"/admin/preferences/preference/{pref.pk}/change/",
        {"recipient": ada.pk, "category": promotions.pk, "channel": "", "frequency": "off"},
    )
    created, changed = ConsentLog.objects.order_by("id")
    assert (created.source, created.actor, created.user_agent) == (
        "admin",
        "staff",
        "StaffBrowser/1",
    )
    assert created.before is None and created.after["frequency"] == "daily"
    assert (changed.before["frequency"], changed.after["frequency"]) == ("daily", "off")
    assert changed.after["enabled"] is False


def test_an_admin_suppression_is_stored_hashed_and_logged(staff):
    staff.post(
        "/admin/preferences/suppression/add/",
        {"channel": "email", "address": " Ada@Example.com ", "scope": "all", "reason": "manual"},
    )
    suppression = Suppression.objects.get()
    assert suppression.address == "ada@example.com" and len(suppression.address_hash) == 64
    assert ConsentLog.objects.get().source == "admin"


def test_a_provider_webhook_suppression_is_logged_once(ada):
    for _ in range(2):  # a replayed bounce adds nothing
        suppression_add(
            channel="email",
            address=ada.email,
            reason=Suppression.Reason.HARD_BOUNCE,
            source="postmark",
            log_source=ConsentLog.Source.PROVIDER,
            recipient=ada,
        )
    log = ConsentLog.objects.get()
    assert (log.source, log.actor, log.action) == ("provider", "postmark", "suppress")
    assert suppression_remove(channel="email", address=ada.email, log_source="admin")
    assert ConsentLog.objects.filter(action="unsuppress").count() == 1


def test_the_recipient_page_shows_choices_and_their_history(staff, ada, promotions):
    from preferences.services import Actor, unsubscribe_category

    unsubscribe_category(
        recipient=ada, category=promotions, actor=Actor(source="one_click", ip="192.0.2.1")
    )
    page = staff.get(f"/admin/notifications/recipient/{ada.pk}/change/").content.decode()
    assert "One-click unsubscribe" in page and "192.0.2.1" in page
    assert "unsubscribe_category" in page
