"""Input PostgreSQL or Python cannot take is refused with a JSON error and changes nothing."""

from __future__ import annotations

import pytest

from notifications.models import Notification, Recipient
from tests.factories import notification_type_with_templates

pytestmark = pytest.mark.django_db


@pytest.fixture
def order_shipped(db):
    return notification_type_with_templates(key="order-shipped", channels=("email",))


def post_raw(api, path: str, body: str):
    return api.post(path, body, content_type="application/json")


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ('{"type": "order-shipped", "recipients": ["42"], "data": {"a": "x\\u0000y"}}', "NUL"),
        ('{"type": "order-shipped", "recipients": ["42"], "data": {"a\\u0000": 1}}', "NUL"),
        ('{"type": "order-shipped", "recipients": ["4\\u00002"], "data": {}}', "NUL"),
        ('{"type": "order-shipped", "recipients": ["42"], "data": {"x": 1e400}}', "range"),
        ('{"type": "order-shipped", "recipients": ["42"], "data": {"x": -Infinity}}', "number"),
        ("[" * 100_000, "nested too deeply"),
        (
            '{"type": "order-shipped", "recipients": ["42"], "data": {"a": "x\\uD800y"}}',
            "surrogate",
        ),
    ],
)
def test_a_body_the_database_cannot_store_is_malformed_json(api, order_shipped, body, says):
    response = post_raw(api, "/api/v1/notifications/", body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "malformed_json" and says in error["message"]
    assert not Notification.objects.exists()


def test_one_bulk_item_with_a_nul_refuses_the_call_whole_and_writes_nothing(api, order_shipped):
    body = (
        '{"notifications": [{"type": "order-shipped", "recipients": [{"external_id": "a"}]},'
        ' {"type": "order-shipped", "recipients": [{"external_id": "b\\u0000"}]}]}'
    )
    response = post_raw(api, "/api/v1/notifications/bulk/", body)
    assert response.status_code == 400 and response.json()["error"]["code"] == "malformed_json"
    assert not Recipient.objects.exists() and not Notification.objects.exists()


def test_a_backslash_before_u0000_is_text_not_a_nul(api, order_shipped):
    body = (
        '{"type": "order-shipped", "recipients": [{"external_id": "42"}],'
        ' "data": {"a": "\\\\u0000"}}'
    )
    response = post_raw(api, "/api/v1/notifications/", body)
    assert response.status_code == 202, response.json()
    assert Notification.objects.get().data == {"a": "\\u0000"}


@pytest.mark.parametrize("suffix", ["", "feed/", "preferences/", "export/"])
def test_a_recipient_path_with_a_nul_is_not_found(api, suffix):
    response = api.get(f"/api/v1/recipients/a%00b/{suffix}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    "path", ["/api/v1/notifications/not-a-uuid/", "/api/v1/broadcasts/x/", "/api/v1/nothing/"]
)
def test_a_path_that_matches_no_route_answers_json(api, path):
    response = api.get(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "not_found"


def test_a_post_without_the_trailing_slash_is_a_json_404_naming_the_path_not_a_redirect(api):
    body = '{"type": "order-shipped", "recipients": ["42"]}'
    response = post_raw(api, "/api/v1/notifications", body)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["message"].endswith("/api/v1/notifications/")
    assert not Notification.objects.exists()


def test_admin_paths_still_gain_their_slash(client):
    response = client.get("/admin")
    assert (response.status_code, response["Location"]) == (301, "/admin/")


def test_a_body_over_the_limit_is_413_in_json(api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = '{"type": "order-shipped", "recipients": ["42"], "data": {"a": "%s"}}' % ("x" * 2000)
    response = post_raw(api, "/api/v1/notifications/", body)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert not Notification.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"locale": "en-aaaaaaaa-bbbbbbbb"}, "locale"),
        ({"timezone": "America"}, "timezone"),
        ({"phone": "+1\u0665\u0665\u0665\u0661\u0662\u0663\u0664\u0665\u0666\u0667"}, "phone"),
    ],
)
def test_recipient_fields_the_columns_cannot_hold_are_refused(api, body, field):
    response = api.put("/api/v1/recipients/odd/", body, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert not Recipient.objects.filter(external_id="odd").exists()


@pytest.mark.parametrize("key", ["   ", "a\tb", "k" * 256])
def test_an_idempotency_key_header_that_names_nothing_is_refused(api, order_shipped, key):
    body = '{"type": "order-shipped", "recipients": [{"external_id": "42"}]}'
    response = api.post(
        "/api/v1/notifications/", body, content_type="application/json", HTTP_IDEMPOTENCY_KEY=key
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_idempotency_key"
    assert not Notification.objects.exists()
