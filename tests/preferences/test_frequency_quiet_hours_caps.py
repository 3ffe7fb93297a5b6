"""Digests, quiet hours, the daily marketing cap and the claim-time re-check, on the clock."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from django.test import TestCase

from notifications import clock, services
from notifications.models import Delivery, Notification, Traffic
from notifications.recovery import release_due
from notifications.routing import route_notifications
from notifications.sending import send_deliveries
from preferences.digests import last_moment, send_digests
from preferences.models import ConsentLog
from preferences.services import Actor, preferences_update, unsubscribe_category
from tests.factories import RecipientFactory

from .conftest import make_type, send, set_now

pytestmark = pytest.mark.django_db

PARIS = ZoneInfo("Europe/Paris")
TEST_ACTOR = Actor(source=ConsentLog.Source.API, name="test")


def paris(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=PARIS)


@pytest.fixture
def parisian(ada):
    ada.timezone = "Europe/Paris"
    ada.save()
    return ada


def choose(recipient, **changes) -> None:
    preferences_update(recipient=recipient, changes=changes, actor=TEST_ACTOR)


def statuses(notification) -> list[tuple[str, str]]:
    return list(
        Delivery.objects.filter(notification=notification).values_list("status", "skip_reason")
    )


def release():
    with TestCase.captureOnCommitCallbacks(execute=True):
        return release_due()


def digests():
    with TestCase.captureOnCommitCallbacks(execute=True):
        return send_digests()


# --- Quiet hours --------------------------------------------------------------------------


def test_marketing_in_quiet_hours_is_sent_when_they_end(smtp_server, parisian, marketing):
    choose(parisian, quiet_hours={"start": "22:00", "end": "08:00"})
    set_now(paris(1, 23, 30))
    notification = send(marketing, [parisian], {"deal": "Q-1"})
    [delivery] = Delivery.objects.filter(notification=notification)
    assert delivery.status == "deferred"
    assert delivery.next_attempt_at == paris(2, 8, 0)
    set_now(paris(2, 7, 59))
    assert release() == 0
    assert smtp_server.inbox.messages == []
    set_now(paris(2, 8, 0))
    assert release() == 1
    [message] = smtp_server.inbox.wait_for(1)
    assert message["Subject"] == "Deal Q-1"
    assert statuses(notification) == [("sent", "")]


def test_quiet_hours_ending_in_the_repeated_autumn_hour_end_in_the_same_pass(ada):
    from datetime import UTC, time

    from preferences.eligibility import quiet_until

    ada.timezone = "America/New_York"
    # 2026-11-01 06:15 UTC is 01:15 EST, the second time the clocks show 01:15.
    now = datetime(2026, 11, 1, 6, 15, tzinfo=UTC)
    until = quiet_until((time(22, 0), time(1, 30)), ada, now)
    assert until.astimezone(UTC) == datetime(2026, 11, 1, 6, 30, tzinfo=UTC)
    # The first pass (01:15 EDT) ends at its own 01:30.
    first = quiet_until((time(22, 0), time(1, 30)), ada, datetime(2026, 11, 1, 5, 15, tzinfo=UTC))
    assert first.astimezone(UTC) == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)


def test_transactional_mail_ignores_quiet_hours(smtp_server, parisian, password_reset):
    choose(parisian, quiet_hours={"start": "22:00", "end": "08:00"})
    set_now(paris(1, 23, 30))
    notification = send(password_reset, [parisian], {"code": "1"})
    assert statuses(notification) == [("sent", "")]


def test_quiet_hours_that_began_after_routing_defer_at_claim(smtp_server, parisian, marketing):
    set_now(paris(1, 21, 59))
    notification = Notification.objects.create(
        type=marketing, recipient_ids=["ada"], data={"deal": "Q-2"}
    )
    route_notifications([str(notification.id)])
    choose(parisian, quiet_hours={"start": "22:00", "end": "08:00"})
    set_now(paris(1, 22, 1))
    send_deliveries(list(Delivery.objects.values_list("id", flat=True)))
    [delivery] = Delivery.objects.all()
    assert (delivery.status, delivery.next_attempt_at, delivery.attempts) == (
        "deferred",
        paris(2, 8, 0),
        0,
    )


# --- Daily cap ----------------------------------------------------------------------------


def test_the_daily_cap_counts_across_types_and_skips_with_the_reason(parisian, promotions):
    news = make_type("newsletter", Traffic.MARKETING, promotions)
    deals = make_type("deals", Traffic.MARKETING, promotions)
    choose(parisian, daily_marketing_cap=2)
    set_now(paris(3, 9, 0))
    first = send(news, [parisian], {"deal": 1})
    second = send(deals, [parisian], {"deal": 2})
    third = send(news, [parisian], {"deal": 3})
    assert statuses(first) == statuses(second) == [("sent", "")]
    assert statuses(third) == [("skipped", "capped")]
    set_now(paris(4, 0, 5))  # a new local day
    assert statuses(send(deals, [parisian], {"deal": 4})) == [("sent", "")]


def test_a_message_counts_on_the_day_it_goes_out_not_when_its_report_comes(parisian, promotions):
    news = make_type("newsletter", Traffic.MARKETING, promotions)
    choose(parisian, daily_marketing_cap=1)
    set_now(paris(3, 22, 0))
    yesterday = send(news, [parisian], {"deal": 1})
    set_now(paris(4, 9, 0))
    # The "delivered" report of yesterday's message arrives this morning.
    Delivery.objects.filter(notification=yesterday).update(
        status="delivered", status_changed_at=clock.now()
    )
    assert statuses(send(news, [parisian], {"deal": 2})) == [("sent", "")]


def test_a_message_scheduled_for_another_day_counts_on_that_day(parisian, promotions):
    news = make_type("newsletter", Traffic.MARKETING, promotions)
    choose(parisian, daily_marketing_cap=1)
    set_now(paris(3, 9, 0))
    event = services.EventRequest(
        type_key=news.key,
        recipients=[parisian.external_id],
        data={"deal": 1},
        send_at=paris(10, 9, 0),
    )
    with TestCase.captureOnCommitCallbacks(execute=True):
        services.notification_accept(api_key_id="test", event=event)
    assert statuses(send(news, [parisian], {"deal": 2})) == [("sent", "")]
    set_now(paris(10, 8, 0))  # that day, the scheduled one is counted
    assert statuses(send(news, [parisian], {"deal": 3})) == [("skipped", "capped")]


def test_the_cap_can_defer_to_the_next_local_day_instead(settings, parisian, promotions):
    settings.MARKETING_DAILY_CAP = 1
    settings.MARKETING_CAP_MODE = "defer"
    news = make_type("newsletter", Traffic.MARKETING, promotions)
    set_now(paris(3, 9, 0))
    send(news, [parisian], {"deal": 1})
    over = send(news, [parisian], {"deal": 2})
    [delivery] = Delivery.objects.filter(notification=over)
    assert (delivery.status, delivery.next_attempt_at) == ("deferred", paris(4, 0, 0))


def test_deferred_overflow_is_spread_over_the_next_days_within_the_cap(
    settings, parisian, promotions
):
    settings.MARKETING_DAILY_CAP = 1
    settings.MARKETING_CAP_MODE = "defer"
    news = make_type("newsletter", Traffic.MARKETING, promotions)
    set_now(paris(3, 9, 0))
    held = [send(news, [parisian], {"deal": i}) for i in range(5)][1:]
    due = [Delivery.objects.get(notification=n).next_attempt_at for n in held]
    assert due == [paris(4, 0, 0), paris(5, 0, 0), paris(6, 0, 0), paris(7, 0, 0)]


def test_deferred_overflow_past_a_week_is_skipped_as_capped(settings, parisian, promotions):
    settings.MARKETING_DAILY_CAP = 1
    settings.MARKETING_CAP_MODE = "defer"
    news = make_type("newsletter", Traffic.MARKETING, promotions)
    set_now(paris(3, 9, 0))
    sent = [send(news, [parisian], {"deal": i}) for i in range(9)]
    assert [statuses(n)[0][0] for n in sent] == ["sent"] + ["deferred"] * 7 + ["skipped"]
    assert statuses(sent[-1]) == [("skipped", "capped")]


def test_a_personal_cap_of_zero_skips_marketing_even_in_defer_mode(settings, parisian, promotions):
    settings.MARKETING_CAP_MODE = "defer"
    choose(parisian, daily_marketing_cap=0)
    news = make_type("newsletter", Traffic.MARKETING, promotions)
    set_now(paris(3, 9, 0))
    assert statuses(send(news, [parisian], {"deal": 1})) == [("skipped", "capped")]


def test_a_message_released_on_a_new_day_counts_for_that_day(settings, parisian, promotions):
    settings.MARKETING_DAILY_CAP = 1
    settings.MARKETING_CAP_MODE = "defer"
    news = make_type("newsletter", Traffic.MARKETING, promotions)
    set_now(paris(3, 9, 0))
    send(news, [parisian], {"deal": 1})
    held = send(news, [parisian], {"deal": 2})
    set_now(paris(4, 0, 5))
    assert release_due() == 1  # released, its send task not yet run
    assert statuses(held) == [("pending", "")]
    # Today's one message is the released one, on its way: the next waits for tomorrow.
    later = send(news, [parisian], {"deal": 3})
    [delivery] = Delivery.objects.filter(notification=later)
    assert (delivery.status, delivery.next_attempt_at) == ("deferred", paris(5, 0, 0))


def test_the_cap_never_holds_back_transactional_mail(settings, parisian, marketing, password_reset):
    settings.MARKETING_DAILY_CAP = 1
    send(marketing, [parisian], {"deal": 1})
    for code in (1, 2):
        assert statuses(send(password_reset, [parisian], {"code": code})) == [("sent", "")]


def test_several_events_in_one_routing_batch_are_counted(settings, parisian, promotions):
    settings.MARKETING_DAILY_CAP = 1
    news = make_type("newsletter", Traffic.MARKETING, promotions)
    rows = [
        Notification.objects.create(type=news, recipient_ids=["ada"], data={"deal": i})
        for i in range(3)
    ]
    route_notifications([str(n.id) for n in rows])
    reasons = sorted(Delivery.objects.values_list("skip_reason", flat=True))
    assert reasons == ["", "capped", "capped"]


# --- Digests ------------------------------------------------------------------------------


def test_a_daily_digest_gathers_three_into_one_email_at_local_morning(
    smtp_server, parisian, promotions
):
    news = make_type("newsletter", Traffic.MARKETING, promotions)
    deals = make_type("deals", Traffic.MARKETING, promotions)
    bob = RecipientFactory(external_id="bob", timezone="Europe/Paris")
    choose(parisian, categories={"promotions": {"frequency": "daily"}})
    choose(bob, categories={"promotions": {"frequency": "daily"}})
    set_now(paris(5, 10, 0))
    for ntype, deal in ((news, "N-1"), (deals, "D-1"), (news, "N-2")):
        notification = send(ntype, [parisian], {"deal": deal})
        assert statuses(notification) == [("digested", "")]
    assert smtp_server.inbox.messages == []
    set_now(paris(5, 23, 0))
    assert digests() == 0
    set_now(paris(6, 8, 5))
    assert digests() == 1
    [message] = smtp_server.inbox.wait_for(1)
    assert message["To"] == "ada@example.com"
    assert message["Subject"] == "3 updates: Promotions"
    text = message.get_body(("plain",)).get_content()
    assert [line for line in text.splitlines() if line.startswith("- ")] == [
        "- Deal N-1",
        "- Deal D-1",
        "- Deal N-2",
    ]
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    digest = Delivery.objects.get(status="sent")
    assert Delivery.objects.filter(digest=digest, status="digested").count() == 3
    # Bob had nothing accumulated: nothing for him; a second run sends nothing more.
    assert digests() == 0
    assert len(smtp_server.inbox.messages) == 1


def test_an_item_arriving_after_the_morning_waits_for_the_next_one(
    smtp_server, parisian, marketing
):
    choose(parisian, categories={"promotions": {"frequency": "daily"}})
    set_now(paris(7, 8, 30))
    send(marketing, [parisian], {"deal": "late"})
    set_now(paris(7, 9, 0))
    assert digests() == 0
    set_now(paris(8, 8, 0))
    assert digests() == 1


def test_items_of_one_morning_folded_in_two_runs_make_two_digests_none_lost(
    smtp_server, parisian, promotions
):
    news = make_type("newsletter", Traffic.MARKETING, promotions)
    choose(parisian, categories={"promotions": {"frequency": "daily"}})
    set_now(paris(5, 10, 0))
    send(news, [parisian], {"deal": "A"})
    send(news, [parisian], {"deal": "B"})
    set_now(paris(6, 8, 5))
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert send_digests(limit=1) == 1
        assert send_digests(limit=1) == 1
    subjects = sorted(m["Subject"] for m in smtp_server.inbox.wait_for(2))
    assert subjects == ["1 update: Promotions", "1 update: Promotions"]
    assert not Delivery.objects.filter(status="digested", digest__isnull=True).exists()


def test_weekly_items_not_yet_due_never_hold_back_a_daily_digest(parisian, promotions):
    news = make_type("newsletter", Traffic.MARKETING, promotions)
    bob = RecipientFactory(external_id="bob", timezone="Europe/Paris")
    choose(bob, categories={"promotions": {"frequency": "weekly"}})
    choose(parisian, categories={"promotions": {"frequency": "daily"}})
    set_now(paris(8, 10, 0))  # a Tuesday: bob's weekly digest is six days away
    send(news, [bob], {"deal": "W"})  # the lower id
    send(news, [parisian], {"deal": "D"})
    set_now(paris(9, 8, 5))
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert send_digests(limit=1) == 1
    waiting = Delivery.objects.filter(status="digested", digest__isnull=True)
    assert [d.recipient.external_id for d in waiting] == ["bob"]


def test_a_backlog_of_weekly_items_longer_than_a_run_looks_through_is_passed_in_turn(
    parisian, promotions, monkeypatch
):
    monkeypatch.setattr("preferences.digests.DIGEST_MAX_PAGES", 2)
    news = make_type("newsletter", Traffic.MARKETING, promotions)
    weekly = [RecipientFactory(timezone="Europe/Paris") for _ in range(3)]
    for person in weekly:
        choose(person, categories={"promotions": {"frequency": "weekly"}})
    choose(parisian, categories={"promotions": {"frequency": "daily"}})
    set_now(paris(8, 10, 0))  # a Tuesday: the weekly digests are six days away
    send(news, weekly, {"deal": "W"})  # three items with the lower ids
    send(news, [parisian], {"deal": "D"})
    set_now(paris(9, 8, 5))
    with TestCase.captureOnCommitCallbacks(execute=True):
        # Each run looks through two items: the second run goes on where the first stopped.
        made = [send_digests(limit=1) for _ in range(2)]
    assert made == [0, 1]
    waiting = Delivery.objects.filter(status="digested", digest__isnull=True)
    assert parisian.id not in {d.recipient_id for d in waiting}


def test_a_run_that_starts_mid_way_goes_round_once_and_folds_each_item_once(
    parisian, promotions, monkeypatch
):
    news = make_type("newsletter", Traffic.MARKETING, promotions)
    choose(parisian, categories={"promotions": {"frequency": "daily"}})
    set_now(paris(8, 10, 0))
    first, second = (send(news, [parisian], {"deal": d}) for d in "AB")
    last = Delivery.objects.get(notification=second)
    set_now(paris(9, 8, 5))
    # The previous run stopped at the first item; the second is past it.
    from django.core.cache import cache

    cache.set("clarion:digests:after", Delivery.objects.get(notification=first).id)
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert send_digests() == 1
    [digest] = Delivery.objects.filter(notification__type__key__startswith="digest--")
    assert digest.notification.data["count"] == 2
    last.refresh_from_db()
    assert last.digest_id == digest.id


@pytest.mark.parametrize(("flagged", "becomes"), [(False, "digested"), (True, "sent")])
def test_a_switch_to_a_digest_before_the_send_folds_it_unless_it_may_have_gone(
    smtp_server, parisian, marketing, flagged, becomes
):
    set_now(paris(9, 12, 0))
    notification = Notification.objects.create(
        type=marketing, recipient_ids=["ada"], data={"deal": "x"}
    )
    route_notifications([str(notification.id)])
    queued = Delivery.objects.get(notification=notification)
    # Sent once before, perhaps: the sweeper flagged it and queued it again.
    Delivery.objects.filter(id=queued.id).update(possible_duplicate=flagged)
    choose(parisian, categories={"promotions": {"frequency": "daily"}})
    with TestCase.captureOnCommitCallbacks(execute=True):
        send_deliveries([queued.id])
    assert statuses(notification) == [(becomes, "")]


def test_a_digest_item_opted_out_before_the_morning_is_skipped(parisian, marketing):
    choose(parisian, categories={"promotions": {"frequency": "daily"}})
    set_now(paris(9, 12, 0))
    notification = send(marketing, [parisian], {"deal": "x"})
    choose(parisian, marketing=False)
    set_now(paris(10, 9, 0))
    assert digests() == 0
    assert statuses(notification) == [("skipped", "opted_out_marketing")]


def test_weekly_digests_fall_on_the_configured_weekday(settings, parisian):
    settings.DIGEST_WEEKDAY = 0  # Monday; 2026-12-07 is a Monday
    moment = last_moment(parisian, "weekly", paris(10, 12, 0).astimezone(ZoneInfo("UTC")))
    assert moment == paris(7, 8, 0)
    assert last_moment(parisian, "daily", paris(10, 7, 0)) == paris(9, 8, 0)


# --- Re-check when a batch is claimed -------------------------------------------------------


def test_an_unsubscribe_between_routing_and_sending_stops_the_queued_delivery(
    smtp_server, ada, marketing
):
    notification = Notification.objects.create(
        type=marketing, recipient_ids=["ada"], data={"deal": "R-1"}
    )
    route_notifications([str(notification.id)])  # its send task is not run yet
    assert statuses(notification) == [("pending", "")]
    unsubscribe_category(recipient=ada, category=marketing.category, actor=TEST_ACTOR)
    send_deliveries(list(Delivery.objects.values_list("id", flat=True)))
    assert statuses(notification) == [("skipped", "opted_out_category")]
    assert smtp_server.inbox.messages == []


def test_an_unsubscribe_while_deferred_stops_it_at_release(smtp_server, parisian, marketing):
    choose(parisian, quiet_hours={"start": "22:00", "end": "08:00"})
    set_now(paris(11, 23, 0))
    notification = send(marketing, [parisian], {"deal": "R-2"})
    choose(parisian, marketing=False)
    set_now(paris(12, 8, 0))
    assert release() == 1
    assert statuses(notification) == [("skipped", "opted_out_marketing")]
    assert smtp_server.inbox.messages == []
    clock.reset()


def test_digest_types_add_no_channels_to_the_preference_center(parisian, marketing):
    from preferences.digests import digest_type
    from preferences.services import marketing_categories

    digest_type(marketing.category, ["email"])
    [(category, channels)] = marketing_categories()
    assert (category, channels) == (marketing.category, ["email"])


def test_default_quiet_hours_apply_to_people_who_set_none(settings, parisian, marketing):
    settings.DEFAULT_QUIET_HOURS = "21:00-07:00"
    set_now(paris(15, 21, 30))
    notification = send(marketing, [parisian], {"deal": "d"})
    assert Delivery.objects.get(notification=notification).next_attempt_at == paris(16, 7, 0)
    choose(parisian, quiet_hours={"start": "23:00", "end": "06:00"})
    assert statuses(send(marketing, [parisian], {"deal": "e"})) == [("sent", "")]


def test_a_digest_speaks_the_recipients_language(smtp_server, parisian, marketing):
    parisian.locale = "fr"
    parisian.save()
    choose(parisian, categories={"promotions": {"frequency": "daily"}})
    set_now(paris(16, 12, 0))
    for deal in ("a", "b"):
        send(marketing, [parisian], {"deal": deal})
    set_now(paris(17, 8, 0))
    assert digests() == 1
    [message] = smtp_server.inbox.wait_for(1)
    assert message["Subject"] == "2 nouveautés: Promotions"
    assert "Se désabonner" in message.get_body(("plain",)).get_content()
