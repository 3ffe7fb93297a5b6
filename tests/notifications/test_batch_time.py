"""A send batch hands messages to providers for SEND_BATCH_SECONDS; the rest go back unsent."""

from __future__ import annotations

import uuid

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.test import TestCase

from channels import ratelimit
from channels.base import Message, Outcome
from notifications import clock, dispatch, journal
from notifications.models import Delivery
from notifications.sending import send_deliveries
from tests.factories import NotificationFactory, RecipientFactory, notification_type_with_templates

IDS = range(9_100_001, 9_100_006)  # journal keys of their own


class RunsOutOfTime:
    """Sends each message as asked; the batch's time runs out while the ``last`` one goes.

    ``error`` (if any) is raised while its stream is closed."""

    def __init__(self, notes: journal.SendJournal, last: int, error=None):
        self.notes, self.last, self.error = notes, last, error
        self.handed: list[int] = []

    def send_each(self, messages):
        try:
            for message in messages:
                self.handed.append(message.delivery_id)
                if len(self.handed) == self.last:
                    self.notes.deadline = 0.0
                yield Outcome.ok(message.delivery_id, f"msg-{message.delivery_id}")
        except GeneratorExit:
            if self.error is not None:
                raise self.error from None
            raise


@pytest.fixture
def batch():
    yield [Message(delivery_id=i, to="a@example.com", content={}) for i in IDS]
    client = journal.SendJournal().client
    for i in IDS:
        if keys := client.keys(f"clarion:journal:{i}:*"):
            client.delete(*keys)


@pytest.fixture
def esp(settings):
    """A provider of its own, with a send rate that does not refill during the test."""
    name = f"esp-{uuid.uuid4().hex}"
    settings.PROVIDERS = {**settings.PROVIDERS, name: {"rate_limit": {"rate": 0.001, "burst": 10}}}
    return name


def claimed_journal() -> journal.SendJournal:
    notes = journal.SendJournal()
    notes.claimed(dict.fromkeys(IDS, clock.now()))
    return notes


def test_out_of_time_a_batch_stops_after_the_message_in_flight(monkeypatch, batch, esp):
    notes = claimed_journal()
    provider = RunsOutOfTime(notes, last=2)
    monkeypatch.setattr(dispatch, "get_provider", lambda name: provider)
    counted = []
    monkeypatch.setattr(
        dispatch, "_count", lambda name, admission, ok, failed: counted.append((ok, failed))
    )

    outcomes = dispatch.dispatch(esp, batch, notes)

    first, second, *rest = IDS
    assert provider.handed == [first, second]
    assert [o.sent for o in outcomes] == [True, True, False, False, False]
    assert {(o.error, o.reached_provider) for o in outcomes[2:]} == {
        (dispatch.BATCH_TIME_SPENT, False)
    }
    # The third was never in flight: a crash now would send it again without a flag.
    progress = journal.progress(dict.fromkeys(IDS, notes.claims[first]))
    assert {i: state for i, (state, _) in progress.items()} == {
        first: "sent",
        second: "sent",
        **dict.fromkeys(rest, "claimed"),
    }
    assert counted == [(2, 0)]  # the provider answered two; the batch ran long, not the provider
    assert ratelimit.take(esp, 10).granted == 5 + 3  # the three unsent give their tokens back


def test_a_batch_out_of_time_before_it_sent_anything_still_sends_one(monkeypatch, batch, esp):
    notes = claimed_journal()
    notes.deadline = 0.0  # its claim, checks and rendering took the whole box
    provider = RunsOutOfTime(notes, last=0)
    monkeypatch.setattr(dispatch, "get_provider", lambda name: provider)

    outcomes = dispatch.dispatch(esp, batch, notes)

    assert provider.handed == [IDS[0]]  # progress, however slow
    assert [o.error for o in outcomes[1:]] == [dispatch.BATCH_TIME_SPENT] * 4


def test_a_later_provider_group_of_a_batch_out_of_time_is_handed_nothing(monkeypatch, batch, esp):
    notes = claimed_journal()
    monkeypatch.setattr(dispatch, "get_provider", lambda name: RunsOutOfTime(notes, last=1))
    dispatch.dispatch(esp, batch[:2], notes)
    monkeypatch.setattr(dispatch, "get_provider", pytest.fail)

    outcomes = dispatch.dispatch(esp, batch[2:], notes)

    assert [o.error for o in outcomes] == [dispatch.BATCH_TIME_SPENT] * 3


def test_a_strike_while_the_late_answer_is_noted_leaves_that_message_in_doubt(
    monkeypatch, batch, esp
):
    notes = claimed_journal()
    monkeypatch.setattr(dispatch, "get_provider", lambda name: RunsOutOfTime(notes, last=2))
    write = journal._Stream.write
    writes = []

    def strike_on_the_third(stream, entries):
        writes.append(entries)
        if len(writes) == 3:  # the note of the second message's answer, the last one sent
            raise SoftTimeLimitExceeded()
        write(stream, entries)

    monkeypatch.setattr(journal._Stream, "write", strike_on_the_third)

    with pytest.raises(dispatch.OutOfTime) as cut:
        dispatch.dispatch(esp, batch, notes)

    # The second went, but its answer was lost: never sent again unflagged.
    first, second, *rest = cut.value.outcomes
    assert first.sent
    assert second.error_kind == "ambiguous"
    assert all(not o.reached_provider for o in rest)


def test_a_strike_just_after_the_last_answer_leaves_the_rest_unsent_not_in_doubt(
    monkeypatch, batch, esp
):
    notes = claimed_journal()
    monkeypatch.setattr(dispatch, "get_provider", lambda name: RunsOutOfTime(notes, last=2))
    track = journal.SendJournal.track

    def strike_as_the_stream_resumes(self, messages, outcomes, **kwargs):
        inner = track(self, messages, outcomes, **kwargs)
        yield next(inner)
        yield next(inner)  # the second: the last the batch had time for
        inner.throw(SoftTimeLimitExceeded())

    monkeypatch.setattr(journal.SendJournal, "track", strike_as_the_stream_resumes)

    with pytest.raises(dispatch.OutOfTime) as cut:
        dispatch.dispatch(esp, batch, notes)

    first, second, *rest = cut.value.outcomes
    assert first.sent and second.sent
    assert [o.error for o in rest] == [dispatch.BATCH_TIME_SPENT] * 3


@pytest.mark.parametrize("error", [OSError("reset"), SoftTimeLimitExceeded()])
def test_a_stream_that_fails_to_close_when_stopped_for_time_leaves_nothing_in_doubt(
    monkeypatch, batch, esp, error
):
    notes = claimed_journal()
    monkeypatch.setattr(dispatch, "get_provider", lambda name: RunsOutOfTime(notes, 1, error))

    try:
        outcomes = dispatch.dispatch(esp, batch, notes)
    except dispatch.OutOfTime as cut:
        outcomes = cut.outcomes

    assert outcomes[0].sent
    assert [o.error for o in outcomes[1:]] == [dispatch.BATCH_TIME_SPENT] * 4


def sent_out_of_time(data: dict, attempts: int = 0) -> list[Delivery]:
    """Three marketing emails sent in one batch out of time once its first is decided; the
    rows as they were recorded, in id order."""
    ntype = notification_type_with_templates(key="deals", channels=("email",), traffic="marketing")
    notification = NotificationFactory(type=ntype, data=data)
    ids = [
        Delivery.objects.create(
            notification=notification,
            recipient=RecipientFactory(),
            channel="email",
            provider="email",
            traffic="marketing",
            attempts=attempts,
        ).id
        for _ in range(3)
    ]
    with TestCase.captureOnCommitCallbacks(execute=True):
        send_deliveries(ids)
    return list(Delivery.objects.filter(id__in=ids).order_by("id"))


@pytest.mark.django_db
def test_what_a_batch_had_no_time_for_is_queued_again_unrendered_with_no_attempt_spent(
    settings, published_sends
):
    settings.SEND_BATCH_SECONDS = 0  # out of time once the first message is built

    first, *rest = sent_out_of_time({"order_id": "A-1"}, attempts=1)

    assert (first.status, first.attempts) == ("sent", 2)
    assert {(r.status, r.attempts, r.error_message, r.summary) for r in rest} == {
        ("pending", 1, dispatch.BATCH_TIME_SPENT, "")
    }
    assert [(p.ids, p.countdown) for p in published_sends] == [([r.id for r in rest], 1)]


@pytest.mark.django_db
def test_a_batch_out_of_time_stops_rendering_even_when_renders_fail(settings, published_sends):
    settings.SEND_BATCH_SECONDS = 0

    first, *rest = sent_out_of_time({})  # no order_id: every render fails

    assert (first.status, first.error_message[:8]) == ("failed", "render: ")
    assert {(r.status, r.attempts, r.error_message) for r in rest} == {
        ("pending", 0, dispatch.BATCH_TIME_SPENT)
    }
