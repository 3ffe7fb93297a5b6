"""Every way a choice or a suppression changes leaves a consent log row saying who did it."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from preferences.models import ConsentLog, Preference, QuietHours, Suppression
from preferences.services import Actor
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
            actor=Actor(source=ConsentLog.Source.PROVIDER, name="postmark"),
            recipient=ada,
        )
    log = ConsentLog.objects.get()
    assert (log.source, log.actor, log.action) == ("provider", "postmark", "suppress")
    assert suppression_remove(
        channel="email", address=ada.email, actor=Actor(source=ConsentLog.Source.ADMIN)
    )
    assert ConsentLog.objects.filter(action="unsuppress").count() == 1


def test_the_recipient_page_shows_choices_and_their_history(staff, ada, promotions):
    from preferences.services import unsubscribe_category

    unsubscribe_category(
        recipient=ada, category=promotions, actor=Actor(source="one_click", ip="192.0.2.1")
    )
    page = staff.get(f"/admin/notifications/recipient/{ada.pk}/change/").content.decode()
    assert "One-click unsubscribe" in page and "192.0.2.1" in page
    assert "unsubscribe_category" in page


def test_an_admin_suppression_already_there_is_refused_with_a_message(staff):
    fields = {"channel": "email", "address": "ada@example.com", "scope": "all", "reason": "manual"}
    staff.post("/admin/preferences/suppression/add/", fields)
    again = staff.post(
        "/admin/preferences/suppression/add/", {**fields, "address": " ADA@example.com"}
    )
    assert again.status_code == 200
    assert "already suppressed" in again.content.decode()
    assert Suppression.objects.count() == 1 and ConsentLog.objects.count() == 1


@pytest.mark.parametrize(
    ("channel", "address", "error"),
    [("email", "not an address", "Enter a valid email address"), ("sms", "call me", "E.164")],
)
def test_an_admin_suppression_of_no_real_address_is_refused(staff, channel, address, error):
    page = staff.post(
        "/admin/preferences/suppression/add/",
        {"channel": channel, "address": address, "scope": "all", "reason": "manual"},
    )
    assert page.status_code == 200 and error in page.content.decode()
    assert not Suppression.objects.exists() and not ConsentLog.objects.exists()


def _delete_selected(staff, model: str, pks: list[int]):
    return staff.post(
        f"/admin/preferences/{model}/",
        {"action": "delete_selected", "_selected_action": pks, "post": "yes"},
    )


def test_deleting_suppressions_from_the_admin_list_logs_each(staff):
    for address in ("ada@example.com", "bob@example.com"):
        suppression_add(channel="email", address=address, reason="manual")
    ConsentLog.objects.all().delete()
    answer = _delete_selected(
        staff, "suppression", list(Suppression.objects.values_list("pk", flat=True))
    )
    assert answer.status_code == 302
    assert not Suppression.objects.exists()
    logs = ConsentLog.objects.all()
    assert [(log.action, log.source, log.actor) for log in logs] == [
        ("unsuppress", "admin", "staff")
    ] * 2


def test_deleting_choices_from_the_admin_list_logs_each(staff, ada, promotions):
    preference = Preference.objects.create(recipient=ada, category=promotions, enabled=False)
    quiet = QuietHours.objects.create(recipient=ada, daily_marketing_cap=2)
    _delete_selected(staff, "preference", [preference.pk])
    _delete_selected(staff, "quiethours", [quiet.pk])
    assert not Preference.objects.exists() and not QuietHours.objects.exists()
    deleted = ConsentLog.objects.filter(action="admin_delete", recipient=ada).order_by("id")
    assert [log.before for log in deleted] == [
        {
            "category": "promotions",
            "type": None,
            "channel": "",
            "enabled": False,
            "frequency": Preference.objects.model._meta.get_field("frequency").default,
        },
        {"start": None, "end": None, "daily_marketing_cap": 2},
    ]


@pytest.mark.parametrize(
    ("window", "says"),
    [
        ({"start": "08:00", "end": "08:00"}, "must differ"),
        ({"start": "22:00"}, "or neither"),
        ({"daily_marketing_cap": "30000"}, "less than or equal to 1000"),
    ],
)
def test_quiet_hours_the_api_would_refuse_the_admin_refuses(staff, ada, window, says):
    page = staff.post(
        "/admin/preferences/quiethours/add/",
        {"recipient": ada.pk, "start": "", "end": "", "daily_marketing_cap": "", **window},
    )
    assert page.status_code == 200 and says in page.content.decode()
    assert not QuietHours.objects.exists() and not ConsentLog.objects.exists()


def test_whose_choice_it_is_cannot_change_in_the_admin(staff, ada, promotions):
    from tests.factories import RecipientFactory

    bob = RecipientFactory(external_id="bob")
    preference = Preference.objects.create(recipient=ada, category=promotions, enabled=True)
    staff.post(
        f"/admin/preferences/preference/{preference.pk}/change/",
        {"recipient": bob.pk, "category": promotions.pk, "channel": "", "frequency": "daily"},
    )
    preference.refresh_from_db()
    assert preference.recipient == ada and preference.frequency == "daily"
    assert ConsentLog.objects.get().recipient == ada
