"""What happens after a provider answers: retry, park, fail, fall back, or never fall back."""

from __future__ import annotations

import pytest
from django.test import TestCase

from channels.base import AMBIGUOUS, PERMANENT, TRANSIENT, Outcome
from notifications import clock, outcomes
from notifications.models import Delivery
from tests.factories import (
    NotificationFactory,
    NotificationTypeFactory,
    RecipientFactory,
    notification_type_with_templates,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def two_providers_and_a_chain(settings):
    settings.PROVIDERS = {
        **settings.PROVIDERS,
        "email-backup": {"channel": "email", "backend": "channels.email.EmailProvider"},
    }
    settings.CHANNEL_PROVIDERS = {**settings.CHANNEL_PROVIDERS, "email": ["email", "email-backup"]}
    settings.MAX_ATTEMPTS = {**settings.MAX_ATTEMPTS, "sms": 3, "email": 3}
    settings.RETRY_PARK_AFTER_SECONDS = 5


def sending(channel: str = "sms", attempts: int = 1) -> Delivery:
    ntype = NotificationTypeFactory(channels=["sms"], fallbacks={"sms": ["email"]})
    return Delivery.objects.create(
        notification=NotificationFactory(type=ntype),
        recipient=RecipientFactory(),
        channel=channel,
        provider=channel,
        traffic="transactional",
        status=Delivery.Status.SENDING,
        attempts=attempts,
    )


def answer(delivery: Delivery, outcome: Outcome) -> list:
    with TestCase.captureOnCommitCallbacks(execute=False) as published:
        outcomes.record({delivery.id: delivery}, [outcome])
    delivery.refresh_from_db()
    return published


def hops(delivery: Delivery) -> list[tuple[str, str, str]]:
    rows = Delivery.objects.filter(notification=delivery.notification).exclude(id=delivery.id)
    return list(rows.values_list("channel", "provider", "status"))


def test_a_429_with_retry_after_waits_that_long_in_postgres_not_the_broker():
    delivery = sending()

    published = answer(delivery, Outcome.failed(delivery.id, TRANSIENT, "429", retry_after=600))

    assert delivery.status == "deferred"
    assert 599 <= (delivery.next_attempt_at - clock.now()).total_seconds() <= 600
    assert published == []
    assert hops(delivery) == []


def test_a_short_transient_wait_stays_in_the_broker_as_a_countdown():
    delivery = sending()

    published = answer(delivery, Outcome.failed(delivery.id, TRANSIENT, "timeout", retry_after=2))

    assert delivery.status == "pending"
    assert len(published) == 1
    assert (delivery.error_kind, delivery.error_message) == ("transient", "timeout")


def test_short_retries_of_a_batch_go_out_together_a_task_per_second_of_wait(published_sends):
    batch = [sending() for _ in range(5)] + [sending(channel="email")]
    ids = [d.id for d in batch]
    waits = [0.2, 0.9, 1.0, 1.5, 3.0, 0.5]

    with TestCase.captureOnCommitCallbacks(execute=True):
        outcomes.record(
            {d.id: d for d in batch},
            [
                Outcome.failed(i, TRANSIENT, "451 greylisted", retry_after=w)
                for i, w in zip(ids, waits, strict=True)
            ],
        )

    # Rounded up: none is retried sooner than it was asked to wait; each channel's own queue.
    assert sorted((p.channel, p.ids, p.countdown) for p in published_sends) == [
        ("email", ids[5:], 1),
        ("sms", ids[:3], 1),
        ("sms", ids[3:4], 2),
        ("sms", ids[4:5], 3),
    ]
    assert set(Delivery.objects.filter(id__in=ids).values_list("status", flat=True)) == {"pending"}


def test_a_permanent_error_goes_straight_to_the_next_hop_without_retries():
    delivery = sending(attempts=1)

    answer(delivery, Outcome.failed(delivery.id, PERMANENT, "21211 invalid number"))

    assert (delivery.status, delivery.attempts) == ("failed", 1)
    [(channel, provider, status)] = hops(delivery)
    assert (channel, provider, status) == ("email", "email", "pending")
    assert Delivery.objects.get(replaces=delivery).hop == 1


def test_spent_retries_fall_back_and_the_backup_provider_comes_before_the_next_channel():
    delivery = sending(channel="email", attempts=3)
    delivery.notification.type.fallbacks = {"email": ["sms"]}
    delivery.notification.type.save()

    answer(delivery, Outcome.failed(delivery.id, TRANSIENT, "503"))

    assert delivery.status == "failed"
    assert hops(delivery) == [("email", "email-backup", "pending")]


def test_an_ambiguous_outcome_is_retried_on_the_same_provider_and_never_falls_back():
    delivery = sending(attempts=1)

    answer(delivery, Outcome.failed(delivery.id, AMBIGUOUS, "read timeout"))
    assert delivery.status in ("pending", "deferred")
    assert delivery.provider == "sms"

    delivery.status, delivery.attempts = Delivery.Status.SENDING, 3
    delivery.save()
    answer(delivery, Outcome.failed(delivery.id, AMBIGUOUS, "read timeout"))

    assert delivery.status == "failed"
    assert hops(delivery) == []


def test_an_open_circuit_falls_back_at_once():
    delivery = sending(channel="email", attempts=1)
    delivery.notification.type.fallbacks = {}
    delivery.notification.type.save()

    answer(delivery, Outcome.failed(delivery.id, TRANSIENT, "circuit open: email"))

    assert delivery.status == "failed"
    assert hops(delivery) == [("email", "email-backup", "pending")]


def test_an_open_circuit_with_no_backup_waits_for_the_next_probe_and_spends_no_attempt():
    delivery = sending(channel="email", attempts=2)
    delivery.provider = "email-backup"  # the last hop of its chain: nothing after it
    delivery.save()

    answer(
        delivery,
        Outcome.failed(delivery.id, TRANSIENT, "circuit open: email-backup", retry_after=30),
    )

    assert (delivery.status, delivery.attempts) == ("deferred", 1)
    assert 29 <= (delivery.next_attempt_at - clock.now()).total_seconds() <= 30
    assert hops(delivery) == []


def _in_app_batch(count: int) -> list[Delivery]:
    ntype = notification_type_with_templates(key="notice", channels=("in_app",))
    notification = NotificationFactory(type=ntype, data={"order_id": "A-1"})
    return [
        Delivery.objects.create(
            notification=notification,
            recipient=RecipientFactory(),
            channel="in_app",
            provider="in_app",
            traffic="transactional",
            status=Delivery.Status.PENDING,
        )
        for _ in range(count)
    ]


def test_a_half_open_breakers_batch_mates_wait_for_it_rather_than_fail(settings):
    from channels import breaker
    from notifications.journal import SendJournal
    from notifications.sending import claim, send_claimed

    settings.CHANNEL_PROVIDERS = {**settings.CHANNEL_PROVIDERS, "in_app": ["in_app"]}
    rows = _in_app_batch(3)
    breaker.reset("in_app")
    opened = clock.now().timestamp() - breaker.limits("in_app").open_seconds - 1
    breaker.cache.set(breaker._key("in_app", "opened_at"), opened, timeout=None)
    try:
        with TestCase.captureOnCommitCallbacks(execute=False):
            send_claimed(claim([d.id for d in rows]), SendJournal())
    finally:
        breaker.reset("in_app")
    statuses = sorted(
        Delivery.objects.filter(id__in=[d.id for d in rows]).values_list("status", flat=True)
    )
    assert statuses == ["deferred", "deferred", "sent"]


@pytest.mark.parametrize(
    "error", ["rate limited: sms", "journal lost: not sent"], ids=["rate-limit", "journal-lost"]
)
def test_a_message_given_back_unsent_spends_no_attempt(error):
    delivery = sending(attempts=3)

    answer(delivery, Outcome.failed(delivery.id, TRANSIENT, error, retry_after=1))

    assert (delivery.status, delivery.attempts) == ("pending", 2)
    assert hops(delivery) == []


def test_a_hop_never_follows_a_success():
    delivery = sending()

    answer(delivery, Outcome.ok(delivery.id, "SM123"))

    assert (delivery.status, delivery.provider_message_id) == ("sent", "SM123")
    assert hops(delivery) == []


def test_a_chain_ends_instead_of_looping():
    delivery = sending(attempts=1)

    answer(delivery, Outcome.failed(delivery.id, PERMANENT, "bad number"))
    email = Delivery.objects.get(replaces=delivery)
    email.status, email.attempts = Delivery.Status.SENDING, 1
    email.save()
    answer(email, Outcome.failed(email.id, PERMANENT, "bad address"))
    backup = Delivery.objects.get(replaces=email)
    backup.status, backup.attempts = Delivery.Status.SENDING, 1
    backup.save()
    answer(backup, Outcome.failed(backup.id, PERMANENT, "bad address"))

    chain = Delivery.objects.filter(notification=delivery.notification).order_by("hop")
    assert [(d.channel, d.provider, d.status) for d in chain] == [
        ("sms", "sms", "failed"),
        ("email", "email", "failed"),
        ("email", "email-backup", "failed"),
    ]


def test_a_message_that_cannot_be_built_fails_alone_and_its_batch_is_sent(monkeypatch):
    from notifications import messages
    from notifications.sending import send_deliveries

    first, poison, last = _in_app_batch(3)
    build = messages.MessageBuilder.build

    def build_or_overflow(self, delivery):
        if delivery.id == poison.id:
            raise RecursionError("maximum recursion depth exceeded")
        return build(self, delivery)

    monkeypatch.setattr(messages.MessageBuilder, "build", build_or_overflow)
    with TestCase.captureOnCommitCallbacks(execute=False):
        send_deliveries([first.id, poison.id, last.id])

    statuses = dict(Delivery.objects.values_list("id", "status"))
    assert [statuses[d.id] for d in (first, poison, last)] == ["sent", "failed", "sent"]
    assert "RecursionError" in Delivery.objects.get(id=poison.id).error_message


def test_a_provider_no_longer_configured_fails_its_messages_not_the_batch():
    from notifications.sending import send_deliveries

    kept, orphan = _in_app_batch(2)
    Delivery.objects.filter(id=orphan.id).update(provider="retired-inbox")
    with TestCase.captureOnCommitCallbacks(execute=False):
        send_deliveries([kept.id, orphan.id])

    statuses = dict(Delivery.objects.values_list("id", "status"))
    assert (statuses[kept.id], statuses[orphan.id]) == ("sent", "failed")


@pytest.mark.parametrize(
    ("attempts", "kind", "error"),
    [
        (2, PERMANENT, "21211 invalid number"),
        (3, TRANSIENT, "503"),
        (2, TRANSIENT, "circuit open: sms"),
    ],
    ids=["permanent", "retries-spent", "circuit-open"],
)
def test_a_delivery_once_answered_ambiguously_never_falls_back_however_it_ends(
    attempts, kind, error
):
    delivery = sending(attempts=1)
    answer(delivery, Outcome.failed(delivery.id, AMBIGUOUS, "read timeout"))
    assert delivery.possible_duplicate

    delivery.status, delivery.attempts = Delivery.Status.SENDING, attempts
    delivery.save()
    answer(delivery, Outcome.failed(delivery.id, kind, error, retry_after=30))

    assert delivery.status in ("failed", "deferred")
    assert hops(delivery) == []


def test_a_delivery_the_sweeper_flagged_never_falls_back():
    delivery = sending(attempts=3)
    Delivery.objects.filter(id=delivery.id).update(possible_duplicate=True)
    delivery.refresh_from_db()

    answer(delivery, Outcome.failed(delivery.id, PERMANENT, "bad number"))

    assert delivery.status == "failed"
    assert hops(delivery) == []


def test_a_fallback_never_sends_again_on_a_channel_the_notification_already_uses():
    delivery = sending(channel="email", attempts=1)
    delivery.provider = "email-backup"  # the email providers are spent; sms comes next
    delivery.save()
    ntype = delivery.notification.type
    ntype.channels, ntype.fallbacks = ["email", "sms"], {"email": ["sms", "in_app"]}
    ntype.save()
    on_sms = Delivery.objects.create(
        notification=delivery.notification,
        recipient=delivery.recipient,
        channel="sms",
        provider="sms",
        traffic="transactional",
        status=Delivery.Status.SENT,
    )

    answer(delivery, Outcome.failed(delivery.id, PERMANENT, "hard bounce"))

    new = Delivery.objects.filter(notification=delivery.notification).exclude(
        id__in=[delivery.id, on_sms.id]
    )
    assert [(d.channel, d.replaces_id) for d in new] == [("in_app", delivery.id)]


def test_a_delivery_on_a_retired_provider_falls_back_to_its_channels_current_providers():
    delivery = sending(channel="email", attempts=1)
    delivery.provider = "old-esp"  # no longer in CHANNEL_PROVIDERS
    delivery.save()

    answer(delivery, Outcome.failed(delivery.id, PERMANENT, "provider old-esp: not configured"))

    assert hops(delivery) == [("email", "email", "pending")]


def test_an_open_circuit_waits_when_its_only_onward_channel_is_one_already_used():
    delivery = sending(channel="email", attempts=1)
    delivery.provider = "email-backup"
    delivery.save()
    ntype = delivery.notification.type
    ntype.channels, ntype.fallbacks = ["email", "sms"], {"email": ["sms"]}
    ntype.save()
    Delivery.objects.create(
        notification=delivery.notification,
        recipient=delivery.recipient,
        channel="sms",
        provider="sms",
        traffic="transactional",
        status=Delivery.Status.SENT,
    )

    answer(
        delivery,
        Outcome.failed(delivery.id, TRANSIENT, "circuit open: email-backup", retry_after=30),
    )

    assert (delivery.status, delivery.attempts) == ("deferred", 0)
    assert [c for c, _, _ in hops(delivery)] == ["sms"]


def test_a_failed_test_send_goes_to_a_backup_provider_as_a_test_and_never_to_another_channel():
    delivery = sending(channel="email", attempts=1)
    delivery.is_test = True
    delivery.save()
    delivery.notification.type.fallbacks = {"email": ["sms"]}
    delivery.notification.type.save()

    answer(delivery, Outcome.failed(delivery.id, PERMANENT, "550 mailbox unavailable"))
    backup = Delivery.objects.get(replaces=delivery)
    assert (backup.provider, backup.is_test, backup.status) == ("email-backup", True, "pending")

    backup.status, backup.attempts = Delivery.Status.SENDING, 1
    backup.save()
    answer(backup, Outcome.failed(backup.id, PERMANENT, "550 mailbox unavailable"))

    assert hops(delivery) == [("email", "email-backup", "failed")]


@pytest.mark.parametrize("where", ["around the template", "inside the template"])
def test_a_task_out_of_time_while_rendering_sends_nothing(monkeypatch, where):
    from celery.exceptions import SoftTimeLimitExceeded

    from notifications import dispatch, messages
    from notifications.sending import send_deliveries
    from templates_app.sandbox import MessageSandbox

    first, unlucky, last = _in_app_batch(3)
    build, getattr_ = messages.MessageBuilder.build, MessageSandbox.getattr
    provider = SlowProvider("in_app")
    monkeypatch.setattr(dispatch, "get_provider", lambda name: provider)
    rendering = {}

    def build_until_the_time_limit(self, delivery):
        rendering["unlucky"] = delivery.id == unlucky.id
        if where == "around the template" and rendering["unlucky"]:
            raise SoftTimeLimitExceeded()
        return build(self, delivery)

    def getattr_until_the_time_limit(self, obj, attribute):  # {{ data.order_id }}
        if where == "inside the template" and rendering["unlucky"]:
            raise SoftTimeLimitExceeded()
        return getattr_(self, obj, attribute)

    monkeypatch.setattr(messages.MessageBuilder, "build", build_until_the_time_limit)
    monkeypatch.setattr(MessageSandbox, "getattr", getattr_until_the_time_limit)
    with TestCase.captureOnCommitCallbacks(execute=False):
        send_deliveries([first.id, unlucky.id, last.id])

    # Recorded at once rather than left claimed for the sweeper. The others, the one built
    # before the strike too, are retried as never tried; the one rendering spends its attempt.
    assert provider.handed == []
    found = {d.id: d for d in Delivery.objects.filter(id__in=[first.id, unlucky.id, last.id])}
    assert {(found[d.id].status, found[d.id].attempts) for d in (first, last)} == {("pending", 0)}
    assert {found[d.id].error_message for d in (first, last)} == {
        "not sent: the task ran out of time"
    }
    assert (found[unlucky.id].status, found[unlucky.id].attempts) == ("pending", 1)
    assert found[unlucky.id].error_message == "the task ran out of time while rendering it"


def test_a_message_that_always_outlasts_the_time_limit_rendering_fails_in_the_end(
    monkeypatch, settings
):
    from celery.exceptions import SoftTimeLimitExceeded

    from notifications import messages
    from notifications.sending import send_deliveries

    settings.MAX_ATTEMPTS = {**settings.MAX_ATTEMPTS, "in_app": 2}
    [poison] = _in_app_batch(1)

    def never_in_time(self, delivery):
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(messages.MessageBuilder, "build", never_in_time)
    for _ in range(2):
        with TestCase.captureOnCommitCallbacks(execute=False):
            send_deliveries([poison.id])

    poison.refresh_from_db()
    assert (poison.status, poison.attempts) == ("failed", 2)


def test_a_render_out_of_time_on_its_last_attempt_goes_to_the_backup_provider(monkeypatch):
    from celery.exceptions import SoftTimeLimitExceeded

    from notifications import messages
    from notifications.sending import send_deliveries

    ntype = notification_type_with_templates(key="notice", channels=("email",))
    delivery = Delivery.objects.create(
        notification=NotificationFactory(type=ntype, data={"order_id": "A-1"}),
        recipient=RecipientFactory(),
        channel="email",
        provider="email",
        traffic="transactional",
        status=Delivery.Status.PENDING,
        attempts=2,  # of 3: the claim counts the last
    )

    def never_in_time(self, delivery):
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(messages.MessageBuilder, "build", never_in_time)
    with TestCase.captureOnCommitCallbacks(execute=False):
        send_deliveries([delivery.id])

    # Not a render error: the template is not known to be at fault, so the channel's backup
    # provider may still take it.
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("failed", 3)
    assert hops(delivery) == [("email", "email-backup", "pending")]


def test_a_strike_where_dispatch_cannot_tell_what_went_leaves_that_group_claimed(
    in_app_then_sms, monkeypatch
):
    from celery.exceptions import SoftTimeLimitExceeded

    from notifications import sending

    providers, rows = in_app_then_sms
    providers["in_app"].out_of_time_at = None
    dispatch = sending.dispatch

    def dispatch_until_the_time_limit(provider, messages, journal):
        if provider == "sms":
            raise SoftTimeLimitExceeded()
        return dispatch(provider, messages, journal)

    monkeypatch.setattr(sending, "dispatch", dispatch_until_the_time_limit)

    found = send_all(rows)

    assert {found[d.id].status for d in rows[:3]} == {"sent"}  # recorded, never resent
    assert {found[d.id].status for d in rows[3:]} == {"sending"}  # for the sweeper


def test_a_message_that_cannot_be_rendered_skips_its_channels_backup_providers():
    delivery = sending(channel="email", attempts=1)
    delivery.notification.type.fallbacks = {"email": ["sms"]}
    delivery.notification.type.save()

    answer(delivery, Outcome.failed(delivery.id, PERMANENT, "render: 'dict' has no attribute"))

    assert hops(delivery) == [("sms", "sms", "pending")]


def test_an_open_circuit_waits_when_every_onward_channel_is_one_the_recipient_cannot_take():
    # The email providers are down and the sms fallback has no number to go to: failing the
    # email now would lose it to an outage the next probe may find over.
    delivery = sending(channel="email", attempts=1)
    delivery.provider = "email-backup"
    delivery.save()
    delivery.recipient.phone = ""
    delivery.recipient.save()
    ntype = delivery.notification.type
    ntype.channels, ntype.fallbacks = ["email"], {"email": ["sms"]}
    ntype.save()

    answer(
        delivery,
        Outcome.failed(delivery.id, TRANSIENT, "circuit open: email-backup", retry_after=30),
    )

    assert (delivery.status, delivery.attempts) == ("deferred", 0)
    assert hops(delivery) == []  # no skipped hop either: the chain is not spent yet

    # When its retries are spent for real, the skipped hop is recorded for support to read.
    delivery.status, delivery.attempts = Delivery.Status.SENDING, 3
    delivery.save()
    answer(delivery, Outcome.failed(delivery.id, TRANSIENT, "timeout"))

    assert delivery.status == "failed"
    assert hops(delivery) == [("sms", "sms", "skipped")]


def second_hop(first: Delivery, provider: str) -> Delivery:
    """The email hop after ``first``, which failed for good, now being sent by ``provider``."""
    first.status, first.error_kind = Delivery.Status.FAILED, "permanent"
    first.save()
    return Delivery.objects.create(
        notification=first.notification,
        recipient=first.recipient,
        channel="email",
        provider=provider,
        traffic="transactional",
        status=Delivery.Status.SENDING,
        attempts=1,
        replaces=first,
        hop=1,
    )


def test_a_retired_providers_fallback_never_goes_back_to_a_provider_the_chain_has_used():
    # email failed, its backup hop went to an ESP since retired: the channel's current
    # providers take over, but not the one that already failed this message.
    delivery = second_hop(sending(channel="email", attempts=1), "old-esp")

    answer(delivery, Outcome.failed(delivery.id, PERMANENT, "provider old-esp: not configured"))

    onward = Delivery.objects.filter(replaces=delivery)
    assert list(onward.values_list("channel", "provider")) == [("email", "email-backup")]


def test_a_chain_never_goes_back_to_a_provider_it_used_when_providers_are_reordered(settings):
    # email failed, then email-backup took over; the operator now lists the backup first.
    delivery = second_hop(sending(channel="email", attempts=1), "email-backup")
    ntype = delivery.notification.type
    ntype.channels, ntype.fallbacks = ["email"], {"email": ["sms"]}
    ntype.save()
    settings.CHANNEL_PROVIDERS = {**settings.CHANNEL_PROVIDERS, "email": ["email-backup", "email"]}

    answer(delivery, Outcome.failed(delivery.id, PERMANENT, "hard bounce"))

    onward = Delivery.objects.filter(replaces=delivery)
    assert list(onward.values_list("channel", "provider")) == [("sms", "sms")]


class SlowProvider:
    """Sends a message at a time; the soft time limit strikes while it holds ``out_of_time_at``."""

    def __init__(self, name: str, out_of_time_at: int | None = None):
        self.name = self.channel = name
        self.out_of_time_at, self.handed = out_of_time_at, []

    def send_each(self, messages):
        from celery.exceptions import SoftTimeLimitExceeded

        for index, message in enumerate(messages):
            if index == self.out_of_time_at:
                raise SoftTimeLimitExceeded()
            self.handed.append(message.delivery_id)
            yield Outcome.ok(message.delivery_id, f"{self.name}-{index}")


@pytest.fixture
def in_app_then_sms(monkeypatch, settings):
    """Three in-app and three SMS deliveries, pending, sent through SlowProviders."""
    from channels import breaker
    from notifications import dispatch

    # An SMS attempt is its last: only a refund keeps a message never tried from failing.
    settings.MAX_ATTEMPTS = {**settings.MAX_ATTEMPTS, "in_app": 2, "sms": 1}
    providers = {"in_app": SlowProvider("in_app", out_of_time_at=1), "sms": SlowProvider("sms")}
    monkeypatch.setattr(dispatch, "get_provider", providers.__getitem__)
    for name in providers:
        breaker.reset(name)
    ntype = notification_type_with_templates(key="notice", channels=("in_app", "sms"))
    notification = NotificationFactory(type=ntype, data={"order_id": "A-1"})
    rows = [
        Delivery.objects.create(
            notification=notification,
            recipient=RecipientFactory(phone=f"+1555000000{i}"),
            channel=channel,
            provider=channel,
            traffic="transactional",
            status=Delivery.Status.PENDING,
        )
        for channel in ("in_app", "sms")
        for i in range(3)
    ]
    yield providers, rows
    for name in providers:
        breaker.reset(name)


def send_all(rows: list[Delivery]) -> dict[int, Delivery]:
    from notifications.sending import send_deliveries

    with TestCase.captureOnCommitCallbacks(execute=False):
        send_deliveries([d.id for d in rows])
    return {d.id: d for d in Delivery.objects.filter(id__in=[d.id for d in rows])}


@pytest.mark.parametrize("journal", ["redis", "none"])
def test_a_task_out_of_time_mid_send_records_what_went_and_sends_nothing_more(
    in_app_then_sms, settings, journal
):
    from channels import breaker

    providers, rows = in_app_then_sms
    if journal == "none":
        settings.REDIS_URL = ""  # no send journal: what is known must be recorded at once

    found = send_all(rows)

    assert providers["in_app"].handed == [rows[0].id]
    assert providers["sms"].handed == []  # past the soft limit nothing more goes out
    assert breaker.state("in_app").failures == 0  # the task ran out of time, not the provider
    sent, in_flight = found[rows[0].id], found[rows[1].id]
    assert (sent.status, sent.possible_duplicate) == ("sent", False)
    # The provider may have the one it held: retried, flagged, as any ambiguous failure.
    assert in_flight.status in ("pending", "deferred") and in_flight.possible_duplicate
    assert (in_flight.error_kind, in_flight.attempts) == (AMBIGUOUS, 1)
    for row in rows[2:]:
        untried = found[row.id]
        assert untried.status in ("pending", "deferred") and not untried.possible_duplicate
        assert untried.error_message == "not sent: the task ran out of time"
        assert untried.attempts == 0  # never tried: no attempt spent, none failed


def test_a_half_open_probe_cut_short_by_the_time_limit_frees_the_next_probe(in_app_then_sms):
    from channels import breaker

    providers, rows = in_app_then_sms
    providers["in_app"].out_of_time_at = 0  # the probe itself is in flight
    opened = clock.now().timestamp() - breaker.limits("in_app").open_seconds - 1
    breaker.cache.set(breaker._key("in_app", "opened_at"), opened, timeout=None)

    send_all(rows)

    assert breaker.admit("in_app") is breaker.Admission.PROBE  # not left refused for a minute


def test_out_of_time_while_the_breaker_counts_a_sent_batch_keeps_its_outcomes(
    in_app_then_sms, monkeypatch
):
    from celery.exceptions import SoftTimeLimitExceeded

    from channels import breaker

    providers, rows = in_app_then_sms
    providers["in_app"].out_of_time_at = None

    def record(*args, **kwargs):
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(breaker, "record", record)

    found = send_all(rows)

    assert {found[d.id].status for d in rows[:3]} == {"sent"}
    assert providers["sms"].handed == []
    assert {found[d.id].error_message for d in rows[3:]} == {"not sent: the task ran out of time"}


def test_out_of_time_in_a_breaker_call_records_that_group_as_never_tried(
    in_app_then_sms, monkeypatch
):
    from celery.exceptions import SoftTimeLimitExceeded

    from channels import breaker

    providers, rows = in_app_then_sms
    providers["in_app"].out_of_time_at = None
    admit = breaker.admit

    def admit_until_the_time_limit(provider):
        if provider == "sms":
            raise SoftTimeLimitExceeded()
        return admit(provider)

    monkeypatch.setattr(breaker, "admit", admit_until_the_time_limit)

    found = send_all(rows)

    assert {found[d.id].status for d in rows[:3]} == {"sent"}  # recorded, never resent
    # Not sent, so not left claimed for the sweeper: retried, its last attempt not spent.
    assert {(found[d.id].status, found[d.id].error_message) for d in rows[3:]} == {
        ("pending", "not sent: the task ran out of time")
    }
    assert providers["sms"].handed == []
