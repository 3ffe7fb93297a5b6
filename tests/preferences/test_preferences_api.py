"""GET and PATCH /api/v1/recipients/{id}/preferences/: shapes, validation, consent log."""

from __future__ import annotations

import pytest
from django.test import Client

from preferences.models import ConsentLog, Preference, QuietHours

pytestmark = pytest.mark.django_db

URL = "/api/v1/recipients/ada/preferences/"


def test_get_lists_marketing_categories_with_defaults(api, ada, marketing, password_reset):
    response = api.get(URL)
    assert response.status_code == 200
    body = response.json()
    assert body["marketing"] is True
    assert body["categories"] == {
        "promotions": {"frequency": "instant", "channels": {"email": True}}
    }
    assert body["quiet_hours"] is None and body["daily_marketing_cap"] is None


def test_patch_changes_only_what_it_names_and_logs_it(api, ada, marketing):
    change = {
        "categories": {"promotions": {"frequency": "weekly", "channels": {"email": False}}},
        "channels": {"sms": False},
        "types": {"weekly-deals": {"enabled": True}},
        "quiet_hours": {"start": "22:00", "end": "07:30"},
        "daily_marketing_cap": 3,
    }
    response = api.patch(URL, change, format="json", HTTP_USER_AGENT="billing-service/2")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["categories"]["promotions"] == {"frequency": "weekly", "channels": {"email": False}}
    assert body["channels"]["sms"] is False and body["channels"]["email"] is True
    assert body["types"] == {"weekly-deals": {"enabled": True, "channels": {}}}
    assert body["quiet_hours"] == {"start": "22:00", "end": "07:30"}
    assert body["daily_marketing_cap"] == 3
    assert api.get(URL).json() == body
    log = ConsentLog.objects.get()
    assert (log.source, log.user_agent) == (ConsentLog.Source.API, "billing-service/2")
    assert log.actor.startswith("api-key:")
    assert log.before["categories"]["promotions"]["frequency"] == "instant"
    assert log.after == body


@pytest.mark.parametrize(
    "change, field",
    [
        ({"categories": {"nope": {"frequency": "daily"}}}, "categories.nope"),
        (
            {"categories": {"promotions": {"frequency": "hourly"}}},
            "categories.promotions.frequency",
        ),
        ({"channels": {"pigeon": False}}, "channels.pigeon"),
        ({"marketing": "no"}, "marketing"),
        ({"types": {"nope": {"enabled": False}}}, "types.nope"),
        ({"quiet_hours": {"start": "25:00", "end": "08:00"}}, "quiet_hours.start"),
        ({"daily_marketing_cap": -1}, "daily_marketing_cap"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_an_invalid_patch_is_a_400_naming_the_field_and_changes_nothing(
    api, ada, marketing, change, field
):
    # A valid part next to the invalid one must not be written either.
    response = api.patch(URL, {"marketing": False, **change}, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in error["fields"]
    assert not Preference.objects.exists() and not QuietHours.objects.exists()
    assert not ConsentLog.objects.exists()


def test_a_non_object_body_is_a_400(api, ada):
    response = api.patch(URL, [1, 2], format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"


def test_an_unknown_recipient_is_a_json_404(api, db):
    response = api.get("/api/v1/recipients/nobody/preferences/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_without_an_api_key_it_is_a_401(ada):
    response = Client().get(URL)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_the_schema_documents_the_preferences_paths(api, db):
    schema = Client().get("/api/schema/", HTTP_ACCEPT="application/json").json()
    path = schema["paths"]["/api/v1/recipients/{external_id}/preferences/"]
    assert set(path) >= {"get", "patch"}
    assert "/api/v1/recipients/{external_id}/erase/" in schema["paths"]
    assert "/api/v1/recipients/{external_id}/export/" in schema["paths"]


def test_an_opt_in_category_starts_off_and_a_digest_default_shows(api, ada, promotions):
    from notifications.models import Traffic
    from preferences.models import TypeDefault
    from tests.factories import CategoryFactory

    from .conftest import make_type

    TypeDefault.objects.create(
        notification_type=make_type("beta-invites", Traffic.MARKETING, promotions), enabled=False
    )
    social = CategoryFactory(key="social", name="Social")
    TypeDefault.objects.create(
        notification_type=make_type("likes", Traffic.MARKETING, social), frequency="daily"
    )
    categories = api.get(URL).json()["categories"]
    assert categories["promotions"]["frequency"] == "off"
    assert categories["social"]["frequency"] == "daily"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (
            {"quiet_hours": {"start": "99999999999999999999:00", "end": "08:00"}},
            "quiet_hours.start",
        ),
        ({"daily_marketing_cap": 40000}, "daily_marketing_cap"),
        ({"daily_marketing_cap": -1}, "daily_marketing_cap"),
    ],
)
def test_patch_with_values_out_of_range_is_refused(api, ada, change, field):
    response = api.patch(URL, change, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert not QuietHours.objects.exists() and not ConsentLog.objects.exists()
