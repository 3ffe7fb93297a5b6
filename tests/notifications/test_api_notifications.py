"""The trigger API: validation, idempotency, recipients inline and by id, errors."""

from __future__ import annotations

import pytest
from django.core import mail

from notifications.models import Delivery, Notification, Recipient
from tests.factories import RecipientFactory, notification_type_with_templates

pytestmark = pytest.mark.django_db

URL = "/api/v1/notifications/"


@pytest.fixture
def order_shipped(db):
    return notification_type_with_templates(key="order-shipped", channels=("email", "in_app"))


def post(api, body, **headers):
    return api.post(URL, body, format="json", **headers)


def bulk_statuses(api, items: list[dict]) -> list[tuple[int, str | None]]:
    """Each item's (status, error code) from one bulk call."""
    response = api.post("/api/v1/notifications/bulk/", {"notifications": items}, format="json")
    return [(r["status"], r.get("error", {}).get("code")) for r in response.json()["results"]]


def test_post_sends_email_and_feed_item_once(api, order_shipped):
    body = {
        "type": "order-shipped",
        "recipients": [{"external_id": "42", "email": "ada@example.com"}],
        "data": {"order_id": "A-1"},
    }
    response = post(api, body)
    assert response.status_code == 202, response.content
    notification = Notification.objects.get(id=response.json()["id"])
    assert notification.status == Notification.Status.ROUTED
    statuses = dict(notification.deliveries.values_list("channel", "status"))
    assert statuses == {"email": "sent", "in_app": "sent"}
    assert [m.subject for m in mail.outbox] == ["Order A-1 shipped"]
    assert mail.outbox[0].to == ["ada@example.com"]


def test_replayed_post_with_same_key_sends_nothing_more(api, order_shipped):
    RecipientFactory(external_id="42")
    body = {"type": "order-shipped", "recipients": ["42"], "data": {"order_id": "A-1"}}
    first = post(api, body, HTTP_IDEMPOTENCY_KEY="k-1")
    again = post(api, body, HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert Notification.objects.count() == 1
    assert len(mail.outbox) == 1


def test_idempotency_key_in_body_equals_header(api, order_shipped):
    RecipientFactory(external_id="42")
    body = {"type": "order-shipped", "recipients": ["42"], "data": {}}
    first = post(api, {**body, "idempotency_key": "k-2"})
    again = post(api, body, HTTP_IDEMPOTENCY_KEY="k-2")
    assert first.json()["id"] == again.json()["id"]


def test_same_key_with_another_body_is_422_and_changes_nothing(api, order_shipped):
    RecipientFactory(external_id="42")
    post(
        api,
        {"type": "order-shipped", "recipients": ["42"], "data": {"a": 1}},
        HTTP_IDEMPOTENCY_KEY="k",
    )
    response = post(
        api,
        {"type": "order-shipped", "recipients": ["42"], "data": {"a": 2}},
        HTTP_IDEMPOTENCY_KEY="k",
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert Notification.objects.count() == 1
    assert Delivery.objects.count() == 2


def test_key_order_in_body_does_not_matter(api, order_shipped):
    RecipientFactory(external_id="42")
    a = post(
        api,
        {"type": "order-shipped", "recipients": ["42"], "data": {"x": 1, "y": 2}},
        HTTP_IDEMPOTENCY_KEY="k",
    )
    b = post(
        api,
        {"data": {"y": 2, "x": 1}, "recipients": ["42"], "type": "order-shipped"},
        HTTP_IDEMPOTENCY_KEY="k",
    )
    assert a.json()["id"] == b.json()["id"]


def test_idempotency_keys_are_scoped_to_the_api_key(api, order_shipped, client):
    from rest_framework.test import APIClient
    from rest_framework_api_key.models import APIKey

    RecipientFactory(external_id="42")
    _, other_key = APIKey.objects.create_key(name="other")
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Api-Key {other_key}")
    body = {"type": "order-shipped", "recipients": ["42"], "data": {}}
    a = post(api, body, HTTP_IDEMPOTENCY_KEY="shared")
    b = post(other, body, HTTP_IDEMPOTENCY_KEY="shared")
    assert a.json()["id"] != b.json()["id"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"type": "nope", "recipients": ["42"]}, "unknown_notification_type"),
        ({"type": "order-shipped", "recipients": ["ghost"]}, "unknown_recipient"),
        ({"type": "order-shipped", "recipients": []}, "validation_error"),
        ({"type": "order-shipped", "recipients": [{"email": "x@example.com"}]}, "validation_error"),
        (
            {"type": "order-shipped", "recipients": [{"external_id": "9", "email": "bad"}]},
            "validation_error",
        ),
        (
            {"type": "order-shipped", "recipients": [{"external_id": "9", "phone": "555"}]},
            "validation_error",
        ),
        ({"type": "order-shipped", "recipients": [42]}, "validation_error"),
        ({"type": "order-shipped", "recipients": ["42"], "data": [1]}, "validation_error"),
        ({"recipients": ["42"]}, "validation_error"),
    ],
)
def test_bad_input_is_a_clear_error_and_stores_nothing(api, order_shipped, body, code):
    RecipientFactory(external_id="42")
    response = post(api, body)
    assert response.status_code in (400, 422), response.content
    assert response.json()["error"]["code"] == code
    assert Notification.objects.count() == 0
    assert Recipient.objects.count() == 1


def test_malformed_json_is_400(api, order_shipped):
    response = api.post(URL, data="{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"


def test_body_must_be_an_object(api, order_shipped):
    response = post(api, [1, 2])
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "not_authenticated"),
        ("Api-Key nope", "authentication_failed"),
        ("Bearer abc", "authentication_failed"),
        ("Api-Key ", "authentication_failed"),
    ],
)
def test_missing_or_bad_api_key_is_401(client, order_shipped, header, code):
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    response = client.post(URL, {"type": "order-shipped"}, content_type="application/json", **extra)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == code
    assert response.headers["WWW-Authenticate"] == "Api-Key"


def test_revoked_key_is_refused(api, api_key, order_shipped):
    from rest_framework_api_key.models import APIKey

    APIKey.objects.update(revoked=True)
    assert post(api, {"type": "order-shipped", "recipients": ["42"]}).status_code == 401


def test_inline_recipient_is_upserted_with_given_fields_only(api, order_shipped):
    RecipientFactory(external_id="7", email="old@example.com", phone="+15550000007")
    post(
        api,
        {"type": "order-shipped", "recipients": [{"external_id": "7", "email": "new@example.com"}]},
    )
    recipient = Recipient.objects.get(external_id="7")
    assert recipient.email == "new@example.com"
    assert recipient.phone == "+15550000007"


def test_get_shows_deliveries_and_their_statuses(api, order_shipped):
    RecipientFactory(external_id="42")
    created = post(api, {"type": "order-shipped", "recipients": ["42"], "data": {"order_id": 1}})
    response = api.get(f"{URL}{created.json()['id']}/")
    assert response.status_code == 200
    body = response.json()
    assert body["type"] == "order-shipped"
    assert sorted((d["channel"], d["status"]) for d in body["deliveries"]) == [
        ("email", "sent"),
        ("in_app", "sent"),
    ]


def test_get_of_another_keys_notification_is_404(api, order_shipped):
    from notifications.models import Notification as N
    from tests.factories import NotificationFactory

    other: N = NotificationFactory(type=order_shipped, api_key_id="someone-else")
    response = api.get(f"{URL}{other.id}/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_future_send_at_is_deferred_until_then(api, order_shipped):
    RecipientFactory(external_id="42")
    response = post(
        api,
        {"type": "order-shipped", "recipients": ["42"], "send_at": "2999-01-01T00:00:00Z"},
    )
    assert response.status_code == 202
    statuses = set(Delivery.objects.values_list("status", flat=True))
    assert statuses == {"deferred"}
    assert mail.outbox == []


def test_each_bad_inline_recipient_is_named_by_position_and_field(api, order_shipped):
    recipients = [
        {"external_id": "9", "phone": "555", "timezone": "Mars/Olympus"},
        "42",
        {"email": "x@example.com"},
    ]
    response = post(api, {"type": "order-shipped", "recipients": recipients})

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "recipients": {
            "0": {
                "phone": ["Give the number in E.164 form, e.g. +15551234567."],
                "timezone": ["Unknown IANA time zone, e.g. Europe/Paris."],
            },
            "2": {"external_id": ["This field is required."]},
        }
    }


def test_a_refused_replay_leaves_its_inline_recipient_as_it_was(api, order_shipped):
    first = {"type": "order-shipped", "recipients": [{"external_id": "80", "email": "a@x.com"}]}
    post(api, first, HTTP_IDEMPOTENCY_KEY="k-80")
    Recipient.objects.filter(external_id="80").update(locale="fr")  # changed since, by a PUT
    other = {
        "type": "order-shipped",
        "recipients": [{"external_id": "80", "email": "evil@x.com", "locale": "de"}],
    }
    refused = post(api, other, HTTP_IDEMPOTENCY_KEY="k-80")
    replayed = post(api, first, HTTP_IDEMPOTENCY_KEY="k-80")
    assert refused.status_code == 422 and replayed.status_code == 202
    recipient = Recipient.objects.get(external_id="80")
    assert (recipient.email, recipient.locale) == ("a@x.com", "fr")


def test_a_bulk_item_refused_gives_its_inline_recipients_to_no_other_item(api, order_shipped):
    items = [
        {"type": "no-such-type", "recipients": [{"external_id": "90", "email": "x@y.com"}]},
        {"type": "order-shipped", "recipients": ["90"]},
        {"type": "order-shipped", "recipients": [{"external_id": "91", "email": "z@y.com"}]},
        {"type": "order-shipped", "recipients": ["91"]},
    ]
    statuses = bulk_statuses(api, items)
    assert statuses == [
        (400, "unknown_notification_type"),
        (400, "unknown_recipient"),
        (202, None),
        (202, None),
    ]
    assert list(Recipient.objects.values_list("external_id", flat=True)) == ["91"]


def test_one_person_given_inline_twice_keeps_every_field_given(api, order_shipped):
    body = {
        "type": "order-shipped",
        "recipients": [
            {"external_id": "77", "email": "p@x.com"},
            {"external_id": "77", "phone": "+15550007777"},
        ],
    }
    assert post(api, body).status_code == 202
    recipient = Recipient.objects.get(external_id="77")
    assert (recipient.email, recipient.phone) == ("p@x.com", "+15550007777")


def test_a_bulk_replay_gives_its_inline_recipients_to_no_other_item(api, order_shipped):
    RecipientFactory(external_id="1")
    post(api, {"type": "order-shipped", "recipients": ["1"]}, HTTP_IDEMPOTENCY_KEY="K")
    items = [
        {
            "type": "order-shipped",
            "recipients": [{"external_id": "new", "email": "n@x.com"}],
            "idempotency_key": "K",
        },
        {"type": "order-shipped", "recipients": ["new"]},
    ]
    statuses = bulk_statuses(api, items)
    assert statuses == [(422, "idempotency_key_reused"), (400, "unknown_recipient")]
    assert not Recipient.objects.filter(external_id="new").exists()
    assert Notification.objects.count() == 1


def test_a_key_repeated_within_one_bulk_call_writes_only_the_first_items_recipients(
    api, order_shipped
):
    RecipientFactory(external_id="b", email="good@x.com")
    items = [
        {"type": "order-shipped", "recipients": ["b"], "idempotency_key": "D"},
        {
            "type": "order-shipped",
            "recipients": [{"external_id": "b", "email": "evil@x.com"}, {"external_id": "c"}],
            "idempotency_key": "D",
        },
    ]
    statuses = bulk_statuses(api, items)
    assert statuses == [(202, None), (422, "idempotency_key_reused")]
    assert Recipient.objects.get(external_id="b").email == "good@x.com"
    assert not Recipient.objects.filter(external_id="c").exists()


def test_a_key_passed_on_by_a_refused_item_lets_the_next_one_give_people_to_others(
    api, order_shipped
):
    items = [
        {"type": "order-shipped", "recipients": ["missing"], "idempotency_key": "K"},
        {
            "type": "order-shipped",
            "recipients": [{"external_id": "n", "email": "n@x.com"}],
            "idempotency_key": "K",
        },
        {"type": "order-shipped", "recipients": ["n"]},
    ]
    statuses = bulk_statuses(api, items)
    assert statuses == [(400, "unknown_recipient"), (202, None), (202, None)]
    assert Recipient.objects.filter(external_id="n").exists()


def test_the_same_bulk_item_twice_in_one_call_is_one_notification(api, order_shipped):
    item = {
        "type": "order-shipped",
        "recipients": [{"external_id": "e", "email": "e@x.com"}],
        "idempotency_key": "E",
    }
    response = api.post(
        "/api/v1/notifications/bulk/", {"notifications": [item, item]}, format="json"
    )
    first, second = response.json()["results"]
    assert (first["status"], second["status"]) == (202, 202)
    assert first["id"] == second["id"] and Notification.objects.count() == 1


@pytest.mark.parametrize("key", ["", "   ", "a\tb", "k" * 256])
def test_a_bad_idempotency_key_in_the_header_or_the_body_is_refused(api, order_shipped, key):
    RecipientFactory(external_id="1")
    body = {"type": "order-shipped", "recipients": ["1"]}
    in_header = post(api, body, HTTP_IDEMPOTENCY_KEY=key)
    in_body = post(api, {**body, "idempotency_key": key})
    for response in (in_header, in_body):
        assert response.status_code == 400, response.content
        assert response.json()["error"]["code"] in {"invalid_idempotency_key", "validation_error"}
    assert in_header.json()["error"]["code"] == "invalid_idempotency_key"
    assert not Notification.objects.exists()


def test_an_event_key_is_not_replayed_as_a_broadcast(api, order_shipped):
    RecipientFactory(external_id="1")
    body = {"type": "order-shipped", "recipients": ["1"], "audience": {"all": True}}
    assert post(api, body, HTTP_IDEMPOTENCY_KEY="X").status_code == 202
    response = api.post("/api/v1/broadcasts/", body, format="json", HTTP_IDEMPOTENCY_KEY="X")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_reused"


def test_upserts_lock_the_same_people_in_one_order_whatever_order_they_come_in():
    from notifications.services import recipient_upserts

    forward = [{"external_id": str(i), "email": f"{i}@x.com"} for i in range(5)]
    for rows in (forward, forward[::-1]):
        [(sql, params)] = recipient_upserts(rows)
        assert sql.startswith('INSERT INTO "notifications_recipient" ("external_id"')
        assert params[0] == ["0", "1", "2", "3", "4"]


def test_an_external_id_is_taken_as_given_inline_as_by_reference(api, order_shipped):
    RecipientFactory(external_id="42", email="forty-two@x.com")
    body = {"type": "order-shipped", "recipients": [{"external_id": " 42", "email": "s@x.com"}]}
    assert post(api, body).status_code == 202
    assert Recipient.objects.get(external_id="42").email == "forty-two@x.com"
    assert Recipient.objects.get(external_id=" 42").email == "s@x.com"
    by_reference = post(api, {"type": "order-shipped", "recipients": [" 42"]})
    assert by_reference.status_code == 202
