"""GDPR export and erase: from the API and the admin, logged, and nothing personal left."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client

from channels.feedback import sms_keyword, sms_status
from notifications.models import Delivery, FeedItem, Recipient, Traffic
from notifications.services import recipients_upsert
from preferences.models import ConsentLog, Suppression
from preferences.tokens import PREFERENCES, make_token
from tests.factories import RecipientFactory, add_template

from .conftest import MARKETING_EMAIL, make_type, send

pytestmark = pytest.mark.django_db

EMAIL, PHONE = "ada.lovelace@example.com", "+15550009876"
TEXT_TYPES = ("text", "character varying", "json", "jsonb")


def columns_mentioning(*needles: str) -> dict[str, int]:
    """Every text and JSON column of every table that holds one of the needles, with counts."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND data_type = ANY(%s)",
            [list(TEXT_TYPES)],
        )
        columns = cursor.fetchall()
        assert len(columns) > 50  # the scan really covers the schema
        found = {}
        for table, column in columns:
            cursor.execute(
                f'SELECT count(*) FROM "{table}" WHERE '  # noqa: S608 - names from the catalog
                + " OR ".join(f'"{column}"::text ILIKE %s' for _ in needles),
                [f"%{n}%" for n in needles],
            )
            count = cursor.fetchone()[0]
            if count:
                found[f"{table}.{column}"] = count
    return found


@pytest.fixture
def admin_client(db):
    user = get_user_model().objects.create_superuser("staff", "staff@example.org", "pw")
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def lived_in(ada, promotions, password_reset, admin_client):
    """Ada with history everywhere personal data can end up."""
    ada.email, ada.phone = EMAIL, PHONE
    ada.attributes = {"name": "Ada", "backup_email": EMAIL}
    ada.tags = ["vip"]
    ada.save()
    shouty = make_type("account-news", Traffic.MARKETING, promotions, channels=("email",))
    shouty.channels = ["email", "in_app"]
    shouty.save()
    add_template(
        shouty, "in_app", {"title": "For {{ recipient.email }}", "body": "{{ data.note }}"}
    )
    send(shouty, [ada], {"deal": EMAIL, "note": f"call {PHONE}"}, key=f"welcome-{EMAIL}")
    send(password_reset, [ada], {"code": "42"})
    # Twilio reports on a message to the phone, then the phone texts STOP.
    sms_status({"MessageSid": "SM0001", "MessageStatus": "delivered", "To": PHONE})
    sms_keyword(sender=PHONE, body="STOP", message_sid="SM0002")
    # The admin adds a suppression by hand: its history row names the address.
    response = admin_client.post(
        "/admin/preferences/suppression/add/",
        {"channel": "sms", "address": PHONE, "scope": "marketing", "reason": "manual"},
    )
    assert response.status_code == 302, response.content[:500]
    Client().post(
        f"/preferences/{make_token(ada, PREFERENCES)}/",
        {"frequency-promotions": "weekly"},
        REMOTE_ADDR="198.51.100.7",
    )
    before = columns_mentioning(EMAIL, PHONE.lstrip("+"))
    assert {
        "notifications_recipient.email",
        "notifications_notification.data",
        "notifications_feeditem.title",
        "preferences_suppression.address",
        "django_admin_log.object_repr",
        "channels_providerevent.detail",
    } <= set(before), before
    return ada


def test_erase_from_the_admin_leaves_no_address_anywhere(lived_in, admin_client):
    response = admin_client.post(
        "/admin/notifications/recipient/",
        {"action": "erase_recipients", "_selected_action": [lived_in.pk]},
    )
    assert response.status_code == 302
    assert columns_mentioning(EMAIL, PHONE.lstrip("+")) == {}
    erased = Recipient.objects.get(pk=lived_in.pk)
    assert erased.erased_at is not None and erased.external_id.startswith("erased-")
    assert not FeedItem.objects.exclude(title="").exists()
    log = ConsentLog.objects.get(action="erase")
    assert (log.source, log.actor, log.recipient_id) == ("admin", "staff", lived_in.pk)
    # The person's own earlier rows stay, but without their IP or user agent.
    [own] = ConsentLog.objects.filter(source="preference_center")
    assert (own.recipient_id, own.ip_address, own.user_agent) == (lived_in.pk, None, "")


def test_after_an_erase_marketing_to_the_same_address_is_suppressed(lived_in, api, password_reset):
    assert not Suppression.objects.filter(channel="email").exists()
    assert api.post("/api/v1/recipients/ada/erase/").status_code == 200
    [kept] = Suppression.objects.filter(channel="email")
    assert (kept.address, kept.scope, kept.reason) == ("", "marketing", "erased")
    deals = make_type("deals", Traffic.MARKETING, password_reset.category, content=MARKETING_EMAIL)
    # The same person comes back under a new id, and under the old one.
    recipients_upsert(
        [{"external_id": "ada-again", "email": EMAIL}, {"external_id": "ada", "email": EMAIL}]
    )
    newcomers = list(Recipient.objects.filter(external_id__in=["ada-again", "ada"]))
    assert len(newcomers) == 2
    notification = send(deals, newcomers, {"deal": "back"})
    reasons = set(
        Delivery.objects.filter(notification=notification).values_list("skip_reason", flat=True)
    )
    assert reasons == {"suppressed"}
    # A password reset is not marketing: it still reaches the new account.
    reset = send(password_reset, [newcomers[0]], {"code": "7"})
    assert Delivery.objects.get(notification=reset).status == "sent"


def test_erase_through_the_api_is_logged_and_repeatable(lived_in, api):
    first = api.post("/api/v1/recipients/ada/erase/")
    assert first.status_code == 200 and first.json()["erased"] is True
    again = api.post("/api/v1/recipients/ada/erase/")
    assert again.status_code == 200
    assert ConsentLog.objects.filter(action="erase", source="api").count() == 1
    assert api.get("/api/v1/recipients/ada/preferences/").status_code == 404
    assert api.post("/api/v1/recipients/nobody/erase/").status_code == 404


def test_export_holds_everything_and_is_logged(lived_in, api):
    response = api.get("/api/v1/recipients/ada/export/")
    assert response.status_code == 200
    body = response.json()
    assert body["recipient"]["email"] == EMAIL
    assert body["recipient"]["attributes"]["backup_email"] == EMAIL
    assert body["preferences"]["categories"]["promotions"]["frequency"] == "weekly"
    assert {d["type"] for d in body["deliveries"]} == {"account-news", "password-reset"}
    assert body["feed"][0]["title"] == f"For {EMAIL}"
    assert {s["reason"] for s in body["suppressions"]} == {"sms_stop", "manual"}
    assert any(c["ip_address"] == "198.51.100.7" for c in body["consent_log"])
    assert ConsentLog.objects.filter(action="export", source="api").count() == 1


def test_export_from_the_admin_downloads_json(lived_in, admin_client):
    response = admin_client.post(
        "/admin/notifications/recipient/",
        {"action": "export_recipients", "_selected_action": [lived_in.pk]},
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    [exported] = response.json()
    assert exported["recipient"]["external_id"] == "ada"
    assert ConsentLog.objects.filter(action="export", source="admin").count() == 1


def test_another_recipient_is_untouched_by_an_erase(lived_in, api, marketing):
    bob = RecipientFactory(external_id="bob", email="bob@example.com")
    send(marketing, [bob], {"deal": "B"})
    api.post("/api/v1/recipients/ada/erase/")
    bob.refresh_from_db()
    assert bob.email == "bob@example.com" and bob.erased_at is None
    assert Delivery.objects.get(recipient=bob).summary == "Deal B"


def test_export_holds_events_naming_them_not_routed_yet(lived_in, api, marketing):
    from notifications.models import Notification

    waiting = Notification.objects.create(
        type=marketing, recipient_ids=["ada", "someone"], data={"note": "hello ada"}
    )
    body = api.get("/api/v1/recipients/ada/export/").json()
    assert body["events_waiting"] == [
        {
            "notification": str(waiting.id),
            "type": marketing.key,
            "data": {"note": "hello ada"},
            "status": "accepted",
            "created_at": waiting.created_at.isoformat(),
        }
    ]
    assert all("error_message" in d for d in body["deliveries"])


def test_an_id_used_again_after_an_erase_is_erased_too(lived_in, api):
    assert api.post("/api/v1/recipients/ada/erase/").status_code == 200
    recipients_upsert([{"external_id": "ada", "email": "ada.again@example.com"}])
    newcomer = Recipient.objects.get(external_id="ada")
    response = api.post("/api/v1/recipients/ada/erase/")
    assert response.status_code == 200
    newcomer.refresh_from_db()
    assert newcomer.erased_at is not None and newcomer.email == ""
    assert not Recipient.objects.filter(external_id="ada").exists()
    assert Recipient.objects.filter(erased_at__isnull=False).count() == 2
    assert columns_mentioning("ada.again@example.com") == {}
    # Asked once more, the answer is the same and nothing more is logged.
    assert api.post("/api/v1/recipients/ada/erase/").status_code == 200
    assert ConsentLog.objects.filter(action="erase").count() == 2


def test_erase_leaves_the_external_id_nowhere_in_the_admin_history(lived_in, api):
    from django.contrib.admin.models import CHANGE, LogEntry
    from django.contrib.contenttypes.models import ContentType

    lived_in.external_id = "grace.hopper.7781"
    lived_in.save()
    # What the admin writes when staff change the recipient: its str() is the external id.
    LogEntry.objects.create(
        user=get_user_model().objects.get(username="staff"),
        content_type=ContentType.objects.get_for_model(Recipient),
        object_id=str(lived_in.pk),
        object_repr=str(lived_in),
        action_flag=CHANGE,
        change_message='[{"changed": {"fields": ["Tags"]}}]',
    )
    assert api.post("/api/v1/recipients/grace.hopper.7781/erase/").status_code == 200
    assert columns_mentioning("grace.hopper.7781") == {}
