"""The send journal: each message's progress in Redis, written without a round trip each."""

from __future__ import annotations

import pytest

from channels.base import AMBIGUOUS, Message, Outcome, send_stream
from notifications import journal
from notifications.journal import SendJournal


def messages(*ids: int) -> list[Message]:
    return [Message(delivery_id=i, to=f"p{i}@example.com", content={}) for i in ids]


def claimed(*ids: int) -> SendJournal:
    """A batch's journal after its claim counted each delivery's first attempt."""
    tracker = SendJournal()
    tracker.claimed({i: 1 for i in ids})
    return tracker


def first_attempts(ids: list[int]) -> dict[int, int]:
    return {i: 1 for i in ids}


@pytest.fixture
def clean_journal():
    ids = [9001, 9002, 9003]
    client = SendJournal().client
    client.delete(*(f"clarion:journal:{i}" for i in ids))
    yield ids
    client.delete(*(f"clarion:journal:{i}" for i in ids))


def test_each_outcome_and_the_message_after_it_are_noted(clean_journal):
    first, second, third = clean_journal
    outcomes = iter([Outcome.ok(first, "m-1"), Outcome.failed(second, AMBIGUOUS, "timeout")])
    passed = list(claimed(*clean_journal).track(messages(first, second, third), outcomes))

    assert [o.delivery_id for o in passed] == [first, second]
    # The third was next in flight when the provider stopped answering: it may have gone.
    assert journal.progress(first_attempts(clean_journal)) == {
        first: ("sent", "m-1"),
        second: ("trying", ""),
        third: ("trying", ""),
    }


def test_a_batch_cut_short_leaves_the_connection_clean_for_the_next(clean_journal):
    first, second, third = clean_journal
    outcomes = iter([Outcome.ok(first, "m-1"), Outcome.ok(second, "m-2")])
    tracked = claimed(*clean_journal).track(messages(first, second, third), outcomes)
    next(tracked)
    tracked.close()  # the provider raised: dispatch stops reading the outcomes

    # Every reply owed was read before the connection went back to the pool: the next
    # command on it gets its own answer, not one left over from the batch.
    client = SendJournal().client
    for _ in range(5):
        assert client.get(f"clarion:journal:{first}") == b"sent@1:m-1"
    assert journal.progress({second: 1})[second][0] == "trying"


def test_without_redis_the_batch_is_sent_and_noted_nowhere(settings, clean_journal):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    outcomes = iter([Outcome.ok(i, f"m-{i}") for i in clean_journal])
    passed = list(SendJournal().track(messages(*clean_journal), outcomes))
    assert [o.sent for o in passed] == [True, True, True]


def test_a_whole_batch_provider_finds_every_message_noted_in_flight(clean_journal):
    class WorkerKilled(BaseException):
        pass

    class BatchProvider:
        name = channel = "batch-api"

        def send_batch(self, batch):
            raise WorkerKilled  # the worker dies while the provider holds the whole batch

    batch = messages(*clean_journal)
    with pytest.raises(WorkerKilled):
        tracker = claimed(*clean_journal)
        list(tracker.track(batch, send_stream(BatchProvider(), batch), whole_batch=True))

    # Any of them may have gone: the sweeper must flag them all, not resend them as untried.
    assert journal.progress(first_attempts(clean_journal)) == {
        i: ("trying", "") for i in clean_journal
    }


def test_a_note_speaks_only_for_the_attempt_that_wrote_it(clean_journal):
    first, second, third = clean_journal
    list(claimed(first).track(messages(first), iter([Outcome.ok(first, "m:1")])))
    SendJournal().client.set(f"clarion:journal:{second}", "trying")  # written before attempts

    # A note of attempt 1 says nothing of attempt 2 (its own note was lost); an unnumbered
    # note is taken as it was written.
    assert journal.progress({first: 2, second: 3, third: 1}) == {second: ("trying", "")}
    assert journal.progress({first: 1}) == {first: ("sent", "m:1")}
