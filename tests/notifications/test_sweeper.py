"""The sweeper's verdict on deliveries left in sending by a worker that was lost."""

from __future__ import annotations

from unittest.mock import Mock

import pytest
import redis
from django.test import TestCase

from channels.base import TRANSIENT, Outcome
from notifications import enqueue, outcomes, recovery, sending
from notifications.dispatch import RATE_LIMITED
from notifications.journal import SendJournal, note_key
from notifications.models import Delivery
from tests.factories import NotificationFactory, NotificationTypeFactory, RecipientFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def stuck_at_once(settings):
    settings.SWEEP_STUCK_AFTER_SECONDS = 0
    settings.MAX_ATTEMPTS = {**settings.MAX_ATTEMPTS, "sms": 3}


@pytest.fixture
def published(monkeypatch) -> list[list[int]]:
    """The delivery ids of each send task the sweep publishes once it commits."""
    tasks: list[list[int]] = []
    monkeypatch.setattr(enqueue, "publish_send", lambda ids, *args: tasks.append(list(ids)))
    return tasks


@pytest.fixture
def batch():
    """Four SMS deliveries a worker claimed (one attempt each) and then died on."""
    ntype = NotificationTypeFactory(channels=["sms"], fallbacks={"sms": ["email"]})
    notification = NotificationFactory(type=ntype)
    rows = [
        Delivery.objects.create(
            notification=notification,
            recipient=RecipientFactory(),
            channel="sms",
            provider="sms",
            traffic="marketing",
            status=Delivery.Status.SENDING,
            attempts=1,
            claimed_at=notification.created_at,
        )
        for _ in range(4)
    ]
    journal = SendJournal()
    journal.claimed({d.id: d.claimed_at for d in rows})
    yield rows
    for d in rows:
        for key in journal.client.scan_iter(f"clarion:journal:{d.id}:*"):
            journal.client.delete(key)


def sweep() -> None:
    with TestCase.captureOnCommitCallbacks(execute=True):
        recovery.sweep_stuck()


def lost_again(delivery: Delivery, journal: SendJournal | None = None) -> None:
    """Claimed once more (the sweep put it back to pending) and lost again at once."""
    assert sending.claim([delivery.id], journal or SendJournal())


def journal_with_redis_down() -> SendJournal:
    journal = SendJournal()
    journal.client = Mock(set=Mock(side_effect=redis.ConnectionError))
    return journal


def test_a_batch_lost_before_sending_goes_back_unflagged_one_task_each(batch, published):
    sweep()

    rows = Delivery.objects.filter(id__in=[d.id for d in batch])
    assert {(d.status, d.attempts, d.possible_duplicate) for d in rows} == {("pending", 1, False)}
    # Alone, so that a message that kills its worker while rendered takes no batch-mate along.
    assert sorted(published) == sorted([d.id] for d in batch)


def test_a_message_lost_before_sending_on_its_last_attempt_fails_and_falls_back(batch, published):
    poison = batch[0]
    for _ in range(2):
        sweep()
        lost_again(poison)
    sweep()

    poison.refresh_from_db()
    assert (poison.status, poison.attempts, poison.error_kind) == ("failed", 3, "transient")
    assert poison.error_message == "the worker was lost before sending, on the last attempt"
    backup = Delivery.objects.get(replaces=poison)
    assert (backup.channel, backup.status, backup.hop) == ("email", "pending", 1)
    assert [backup.id] in published
    others = Delivery.objects.filter(id__in=[d.id for d in batch[1:]])
    assert {(d.status, d.attempts) for d in others} == {("pending", 1)}


def test_a_message_lost_in_flight_on_its_last_attempt_fails_without_falling_back(batch, published):
    in_flight = batch[0]
    SendJournal().client.set(note_key(in_flight.id, in_flight.claimed_at), "trying")
    Delivery.objects.filter(id=in_flight.id).update(attempts=3)

    sweep()

    in_flight.refresh_from_db()
    assert (in_flight.status, in_flight.error_kind) == ("failed", "ambiguous")
    assert in_flight.possible_duplicate  # it may have gone: the log says so, as for a retry
    assert not Delivery.objects.filter(replaces=in_flight).exists()
    assert [in_flight.id] not in published


def test_a_message_the_provider_took_is_recorded_as_sent_and_not_queued(batch, published):
    taken = batch[0]
    SendJournal().client.set(note_key(taken.id, taken.claimed_at), "sent:SM-1")

    sweep()

    taken.refresh_from_db()
    assert (taken.status, taken.provider_message_id) == ("sent", "SM-1")
    assert [taken.id] not in published
    assert len(published) == 3


def test_a_note_left_by_an_earlier_attempt_does_not_vouch_for_the_last(batch, published):
    lost = batch[0]
    sweep()  # attempt 1 never reached the provider: its note says so
    lost_again(lost)
    sweep()  # nor did attempt 2
    # Attempt 3's claim cannot write its note (a Redis blip), so attempt 2's stays; the
    # message is then handed to the provider and the worker is lost.
    lost_again(lost, journal_with_redis_down())

    sweep()

    lost.refresh_from_db()
    # The provider may have it: failed as in doubt, and no other channel sends it again.
    assert (lost.status, lost.attempts, lost.error_kind) == ("failed", 3, "ambiguous")
    assert not Delivery.objects.filter(replaces=lost).exists()


def test_an_attempt_given_back_and_counted_again_is_not_vouched_for_by_its_old_note(
    batch, published
):
    # Held back by the send rate, the claim's attempt is given back: the next claim counts
    # attempt 1 again. Its own note is lost to a Redis blip; the first claim's is not.
    lost = Delivery.objects.select_related("notification__type", "recipient").get(id=batch[0].id)
    held_back = Outcome.failed(lost.id, TRANSIENT, f"{RATE_LIMITED}: sms")
    with TestCase.captureOnCommitCallbacks(execute=False):
        outcomes.record({lost.id: lost}, [held_back])
    lost_again(lost, journal_with_redis_down())

    sweep()

    lost.refresh_from_db()
    assert (lost.status, lost.attempts, lost.possible_duplicate) == ("pending", 1, True)
    assert [lost.id] in published
