"""Broadcasts: an audience fanned out in the database, once per eligible person and channel."""

from __future__ import annotations

from datetime import timedelta

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.db import connection, transaction
from django.test import TestCase
from django.test.utils import CaptureQueriesContext

from notifications import broadcasts, clock, enqueue, fanout, routing, services
from notifications.models import Delivery, Notification, Recipient
from preferences import eligibility
from preferences.eligibility import Decision, Skip
from preferences.models import Suppression
from preferences.services import Actor, unsubscribe_all_marketing
from preferences.suppressions import suppression_add
from tests.factories import RecipientFactory, notification_type_with_templates

pytestmark = pytest.mark.django_db


@pytest.fixture
def deals():
    return notification_type_with_templates(
        key="weekly-deals", channels=("email", "in_app"), traffic="marketing"
    )


def people(count: int, prefix: str = "p", **fields) -> list[Recipient]:
    return Recipient.objects.bulk_create(
        Recipient(external_id=f"{prefix}{i}", email=f"{prefix}{i}@example.com", **fields)
        for i in range(count)
    )


def broadcast(audience: dict, key: str | None = None, data: dict | None = None):
    with TestCase.captureOnCommitCallbacks(execute=True):
        return broadcasts.broadcast_accept(
            api_key_id="k",
            type_key="weekly-deals",
            audience=audience,
            data=data or {"order_id": "Sale"},
            idempotency_key=key,
            fingerprint=services.fingerprint({"audience": audience, "data": data}),
        )


def test_everyone_gets_one_delivery_per_channel(deals):
    people(25)

    accepted = broadcast({"all": True})

    rows = Delivery.objects.filter(notification=accepted.notification)
    assert rows.count() == 50
    assert set(rows.values_list("status", flat=True)) == {"sent"}
    pairs = rows.values_list("recipient_id", "channel")
    assert len(set(pairs)) == 50


def test_attribute_and_tag_filters_pick_the_audience(deals):
    people(3, "pro", attributes={"plan": "pro", "country": "FR"}, tags=["beta", "news"])
    people(2, "pro-nobeta", attributes={"plan": "pro"}, tags=["news"])
    people(4, "free", attributes={"plan": "free"}, tags=["beta"])

    accepted = broadcast({"attributes": {"plan": "pro"}, "tags": ["beta"]})

    got = set(
        Delivery.objects.filter(notification=accepted.notification).values_list(
            "recipient__external_id", flat=True
        )
    )
    assert got == {"pro0", "pro1", "pro2"}


def test_opted_out_and_suppressed_people_are_skipped_with_the_reason(deals):
    out, bounced, fine = people(3)
    unsubscribe_all_marketing(recipient=out, actor=Actor(source="api"))
    suppression_add(channel="email", address=bounced.email, reason="hard_bounce")

    accepted = broadcast({"all": True})

    rows = {
        (d.recipient_id, d.channel): (d.status, d.skip_reason)
        for d in Delivery.objects.filter(notification=accepted.notification)
    }
    assert rows[(out.id, "email")] == ("skipped", "opted_out_marketing")
    assert rows[(out.id, "in_app")] == ("skipped", "opted_out_marketing")
    assert rows[(bounced.id, "email")] == ("skipped", "suppressed")
    assert rows[(bounced.id, "in_app")] == ("sent", "")
    assert rows[(fine.id, "email")] == ("sent", "")
    assert Suppression.objects.count() == 1


def test_a_replayed_broadcast_creates_nothing_and_another_body_is_refused(deals):
    people(10)
    first = broadcast({"all": True}, key="deals-1")

    again = broadcast({"all": True}, key="deals-1")
    other = broadcast({"all": True}, key="deals-1", data={"order_id": "Other"})

    assert (again.notification.id, again.created) == (first.notification.id, False)
    assert other.error.code == "idempotency_key_reused"
    assert Delivery.objects.count() == 20


@pytest.mark.parametrize(
    "audience",
    [{}, {"all": False}, {"all": True, "tags": ["x"]}, {"tags": "x"}, {"region": "eu"}, []],
)
def test_a_malformed_audience_is_refused(deals, audience):
    with pytest.raises(broadcasts.AudienceError):
        broadcast(audience)
    assert not Delivery.objects.exists()


def queries_to_fan_out(size: int, settings) -> int:
    settings.BROADCAST_BATCH_SIZE = 20_000
    people(size, prefix=f"q{size}-")
    with TestCase.captureOnCommitCallbacks(execute=False):
        accepted = broadcasts.broadcast_accept(
            api_key_id="k",
            type_key="weekly-deals",
            audience={"attributes": {"cohort": size}},
            data={"headline": "Sale"},
        )
    Recipient.objects.filter(external_id__startswith=f"q{size}-").update(
        attributes={"cohort": size}
    )
    with CaptureQueriesContext(connection) as captured:
        with TestCase.captureOnCommitCallbacks(execute=False):
            created = routing.route_notifications([str(accepted.notification.id)])
    assert created == size * 2
    return len(captured)


def test_fan_out_takes_the_same_queries_for_100_and_10000_recipients(deals, settings):
    small = queries_to_fan_out(100, settings)
    large = queries_to_fan_out(10_000, settings)
    assert small == large, f"{small} queries for 100 recipients, {large} for 10,000"


SETTINGS_OFF = "set_config('jit', 'off', true), set_config('enable_sort', 'off', true)"
SETTINGS_ON = "set_config('jit', 'on', true), set_config('enable_sort', 'on', true)"


def plan_settings() -> tuple[str, str]:
    """This transaction's jit and enable_sort."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('jit'), current_setting('enable_sort')")
        return cursor.fetchone()


@pytest.mark.django_db(transaction=True)  # a real transaction, not a savepoint
def test_a_fan_out_plans_each_batch_query_alone_without_jit_or_sorting(deals, settings):
    settings.BROADCAST_BATCH_SIZE = 2
    people(3)
    notification = Notification.objects.create(type=deals, audience={"all": True})

    with transaction.atomic():
        with connection.cursor() as cursor:  # known values to put back, whatever the server's
            cursor.execute(f"SELECT {SETTINGS_ON}")
        with CaptureQueriesContext(connection) as captured:
            assert fanout.fan_out(notification, clock.now()).created == 6
        assert plan_settings() == ("on", "on"), "the settings outlived the batch queries"

    queries = [q["sql"] for q in captured]
    batches = [i for i, sql in enumerate(queries) if '"_opt_out_email"' in sql]
    assert len(batches) == 3  # two batches, then the empty one that ends them
    for i in batches:  # each batch query alone, between the settings and their return
        assert SETTINGS_OFF in queries[i - 1]
        assert SETTINGS_ON in queries[i + 1]


@pytest.mark.django_db(transaction=True)  # a real transaction, not a savepoint
def test_the_batch_settings_are_put_back_after_a_query_stopped_short_of_the_database():
    with transaction.atomic():
        before = plan_settings()
        with pytest.raises(SoftTimeLimitExceeded), eligibility.keyset_plan():
            assert plan_settings() == ("off", "off")
            raise SoftTimeLimitExceeded()  # as the task's time limit does, mid-query
        assert plan_settings() == before


@pytest.mark.django_db(transaction=True)  # tables no ANALYZE has seen, as after an import
def test_a_fan_out_reads_each_batch_through_the_primary_key_without_sorting(deals, settings):
    """With no statistics PostgreSQL took the recipients for a few rows, read them all and
    sorted them, for every batch: work that grows with the square of the audience."""
    settings.BROADCAST_BATCH_SIZE = 10
    people(25)
    notification = Notification.objects.create(type=deals, audience={"all": True})
    with transaction.atomic():
        with CaptureQueriesContext(connection) as captured:
            assert fanout.fan_out(notification, clock.now()).created == 50
        batches = [q["sql"] for q in captured if '"_opt_out_email"' in q["sql"]]
        assert len(batches) > 1
        with eligibility.keyset_plan(), connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN {batches[1]}")
            plan = "\n".join(row[0] for row in cursor.fetchall())

    assert "Index Scan using notifications_recipient_pkey" in plan
    assert "Sort" not in plan


def test_copied_rows_are_the_rows_the_orm_writes(deals):
    """COPY (binary, over a template of the model's defaults) writes, column by column, what
    saving the same Delivery through the ORM writes: any column typed or defaulted wrongly
    differs here."""
    copied, saved = people(4, prefix="c"), people(4, prefix="s")
    notification = Notification.objects.create(type=deals, audience={"all": True})
    now = clock.now()

    def rows(who: list[Recipient]) -> list[dict]:
        decisions = [
            Decision(who[0].id, "email"),
            Decision(who[1].id, "email", skip_reason=Skip.SUPPRESSED),
            Decision(who[2].id, "in_app", defer_until=now + timedelta(hours=3, microseconds=7)),
            Decision(who[3].id, "email", digest="weekly"),
        ]
        return [fanout._delivery(notification, d, "console", now) for d in decisions]

    assert fanout.copy_deliveries(rows(copied)) == 4
    Delivery.objects.bulk_create(Delivery(**row) for row in rows(saved))

    def written(who: list[Recipient]) -> list[dict]:
        return list(Delivery.objects.filter(recipient__in=who).order_by("recipient_id").values())

    assert [row["status"] for row in written(copied)] == [
        "pending",
        "skipped",
        "deferred",
        "digested",
    ]
    # The ORM stamps its own creation and update times (auto_now); COPY writes the routing's.
    assert {(row["created_at"], row["updated_at"]) for row in written(copied)} == {(now, now)}
    apart = {"id", "recipient_id", "created_at", "updated_at"}
    differences = {
        column
        for copy, orm in zip(written(copied), written(saved), strict=True)
        for column in copy.keys() - apart
        if copy[column] != orm[column]
    }
    assert differences == set()


def test_pending_sends_are_published_once_each_in_batches_per_channel(
    deals, settings, published_sends
):
    settings.MARKETING_SEND_BATCH_SIZE = 7
    settings.SEND_BATCH_SIZE = 3  # transactional only
    people(25)
    with TestCase.captureOnCommitCallbacks(execute=False):
        accepted = broadcasts.broadcast_accept(
            api_key_id="k", type_key="weekly-deals", audience={"all": True}, data={}
        )
    with TestCase.captureOnCommitCallbacks(execute=False):
        routing.route_notifications([str(accepted.notification.id)])
    enqueue.publish_pending_sends([accepted.notification.id], page=10)

    rows = Delivery.objects.filter(notification=accepted.notification)
    for channel in ("email", "in_app"):
        batches = [p.ids for p in published_sends if p.channel == channel]
        assert [len(b) for b in batches] == [7, 7, 7, 4]
        sent = [i for b in batches for i in b]
        assert sent == sorted(rows.filter(channel=channel).values_list("id", flat=True))


# --- API -------------------------------------------------------------------------------------


def test_the_api_accepts_a_broadcast_and_reports_its_progress(api, deals):
    people(4, attributes={"plan": "pro"})
    body = {
        "type": "weekly-deals",
        "audience": {"attributes": {"plan": "pro"}},
        "data": {"order_id": "D-1"},
    }

    accepted = api.post("/api/v1/broadcasts/", body, format="json")

    assert accepted.status_code == 202, accepted.content
    detail = api.get(f"/api/v1/broadcasts/{accepted.json()['id']}/").json()
    assert detail["type"] == "weekly-deals"
    assert detail["audience"] == {"attributes": {"plan": "pro"}}
    assert detail["deliveries"] == {"total": 8, "by_status": {"sent": 8}}

    replay = api.post("/api/v1/broadcasts/", body, format="json", HTTP_IDEMPOTENCY_KEY="b1")
    again = api.post("/api/v1/broadcasts/", body, format="json", HTTP_IDEMPOTENCY_KEY="b1")
    assert again.json()["id"] == replay.json()["id"]
    assert again["Idempotent-Replayed"] == "true"


def test_the_api_refuses_a_bad_audience_or_type_with_the_json_error_format(api, deals):
    bad = api.post(
        "/api/v1/broadcasts/", {"type": "weekly-deals", "audience": {"x": 1}}, format="json"
    )
    unknown = api.post(
        "/api/v1/broadcasts/", {"type": "nope", "audience": {"all": True}}, format="json"
    )

    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "validation_error"
    assert "audience" in bad.json()["error"]["fields"]
    assert unknown.status_code == 400
    assert unknown.json()["error"]["code"] == "unknown_notification_type"
    assert not Delivery.objects.exists()


def test_an_event_notification_is_not_a_broadcast(api, deals):
    people(1)
    event = api.post(
        "/api/v1/notifications/",
        {"type": "weekly-deals", "recipients": ["p0"], "data": {"order_id": "E-1"}},
        format="json",
    )

    assert api.get(f"/api/v1/broadcasts/{event.json()['id']}/").status_code == 404


def test_a_broadcast_is_read_at_its_own_endpoint_not_as_a_list_of_deliveries(api, deals):
    people(3)
    accepted = api.post(
        "/api/v1/broadcasts/", {"type": "weekly-deals", "audience": {"all": True}}, format="json"
    ).json()
    response = api.get(f"/api/v1/notifications/{accepted['id']}/")
    assert response.status_code == 404
    assert f"/api/v1/broadcasts/{accepted['id']}/" in response.json()["error"]["message"]


def test_the_api_refuses_an_overlong_or_conflicting_idempotency_key(api, deals):
    body = {"type": "weekly-deals", "audience": {"all": True}, "idempotency_key": "a"}

    long = api.post("/api/v1/broadcasts/", body, format="json", HTTP_IDEMPOTENCY_KEY="k" * 256)
    clash = api.post("/api/v1/broadcasts/", body, format="json", HTTP_IDEMPOTENCY_KEY="b")

    assert long.json()["error"]["code"] == "invalid_idempotency_key"
    assert clash.json()["error"]["code"] == "idempotency_key_mismatch"
    assert (long.status_code, clash.status_code) == (400, 400)
    assert not Delivery.objects.exists()


@pytest.mark.parametrize(
    "audience",
    [
        {"attributes": {"plan": "pro"}},
        {"attributes": {"seats": 1}},
        {"attributes": {"seats": 1.0}},
        {"attributes": {"beta": True}},
        {"attributes": {"plan": "pro", "beta": True}},
        {"tags": ["news"]},
        {"tags": ["news", "vip"]},
        {"attributes": {"plan": "pro"}, "tags": ["vip"]},
    ],
)
def test_trial_modes_audience_matching_answers_as_postgresql_does(audience):
    from notifications.broadcasts import _matches, audience_queryset

    people = [
        ({"plan": "pro", "seats": 1, "beta": True}, ["news", "vip"]),
        ({"plan": "pro", "seats": 1.0}, ["news"]),
        ({"plan": "free", "seats": True, "beta": 1}, ["vip"]),
        ({"plan": "pro", "beta": False}, []),
        ({}, ["news", "vip", "other"]),
    ]
    rows = [RecipientFactory(attributes=a, tags=t) for a, t in people]
    by_postgresql = set(audience_queryset(audience).values_list("pk", flat=True))
    by_python = {r.pk for r in rows if _matches(audience, r.attributes, r.tags)}
    assert by_python == by_postgresql


def test_a_retry_naming_the_same_tags_in_another_order_is_a_replay(api, deals):
    people(2, tags=["a", "b"])
    body = {"type": "weekly-deals", "audience": {"tags": ["a", "b"]}}
    first = api.post("/api/v1/broadcasts/", body, format="json", HTTP_IDEMPOTENCY_KEY="B")
    body["audience"]["tags"] = ["b", "a", "b"]
    retry = api.post("/api/v1/broadcasts/", body, format="json", HTTP_IDEMPOTENCY_KEY="B")
    assert retry.status_code == 202, retry.content
    assert retry.json()["id"] == first.json()["id"] and retry["Idempotent-Replayed"] == "true"
