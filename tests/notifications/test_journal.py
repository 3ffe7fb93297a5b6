"""The send journal: each message's progress in Redis, written without a round trip each."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import redis

from channels.base import AMBIGUOUS, TRANSIENT, Message, Outcome, send_stream
from notifications import journal
from notifications.journal import SendJournal


def messages(*ids: int) -> list[Message]:
    return [Message(delivery_id=i, to=f"p{i}@example.com", content={}) for i in ids]


CLAIMED_AT = datetime(2026, 3, 1, 9, 30, 0, 123456, tzinfo=UTC)


def claimed(*ids: int, at: datetime = CLAIMED_AT) -> SendJournal:
    """A batch's journal after its claim."""
    tracker = SendJournal()
    tracker.claimed(dict.fromkeys(ids, at))
    return tracker


def claims(ids: list[int], at: datetime = CLAIMED_AT) -> dict[int, datetime]:
    return dict.fromkeys(ids, at)


@pytest.fixture
def clean_journal():
    ids = [9001, 9002, 9003]
    client = SendJournal().client
    yield ids
    for i in ids:
        for key in client.scan_iter(f"clarion:journal:{i}:*"):
            client.delete(key)


def test_each_outcome_and_the_message_after_it_are_noted(clean_journal):
    first, second, third = clean_journal
    outcomes = iter([Outcome.ok(first, "m-1"), Outcome.failed(second, AMBIGUOUS, "timeout")])
    passed = list(claimed(*clean_journal).track(messages(first, second, third), outcomes))

    assert [o.delivery_id for o in passed] == [first, second]
    # The third was next in flight when the provider stopped answering: it may have gone.
    assert journal.progress(claims(clean_journal)) == {
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
        assert client.get(journal.note_key(first, CLAIMED_AT)) == b"sent:m-1"
    assert journal.progress(claims([second]))[second][0] == "trying"


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
    assert journal.progress(claims(clean_journal)) == {i: ("trying", "") for i in clean_journal}


def test_a_note_speaks_only_for_the_claim_that_wrote_it(clean_journal):
    first, second, _ = clean_journal
    list(claimed(first).track(messages(first), iter([Outcome.ok(first, "m:1")])))
    claimed(second)  # never sent: noted as claimed
    later = CLAIMED_AT + timedelta(microseconds=1)

    # A later claim (its own note lost) learns nothing from the earlier claim's notes.
    assert journal.progress({first: later, second: later}) == {}
    assert journal.progress(claims([first, second])) == {
        first: ("sent", "m:1"),
        second: ("claimed", ""),
    }


def _provider(sent: list[int], ids: list[int]):
    """A provider's stream of outcomes that notes each message as it goes out."""
    for i in ids:
        sent.append(i)
        yield Outcome.ok(i, f"m-{i}")


def test_redis_lost_after_the_claim_gives_the_batch_back_before_anything_goes(clean_journal):
    tracker = claimed(*clean_journal)
    tracker.client = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    sent: list[int] = []

    passed = list(tracker.track(messages(*clean_journal), _provider(sent, clean_journal)))

    # The claim's notes say "never tried" and can no longer change: nothing may go out now.
    assert sent == []
    assert [(o.error_kind, o.error.split(":")[0]) for o in passed] == [
        (TRANSIENT, journal.JOURNAL_LOST)
    ] * 3
    assert journal.progress(claims(clean_journal)) == {i: ("claimed", "") for i in clean_journal}


def test_redis_lost_mid_batch_gives_the_rest_back_unsent(clean_journal, monkeypatch):
    first, second, third = clean_journal
    writes: list[list] = []
    real_write = journal._Stream.write

    def write_then_lose(stream, entries):
        writes.append(entries)
        if len(writes) == 2:  # Redis goes while the first outcome is being noted
            stream._lost()
            return
        real_write(stream, entries)

    monkeypatch.setattr(journal._Stream, "write", write_then_lose)
    sent: list[int] = []

    passed = list(
        claimed(*clean_journal).track(messages(*clean_journal), _provider(sent, clean_journal))
    )

    assert sent == [first]
    assert [o.sent for o in passed] == [True, False, False]
    assert {o.delivery_id for o in passed[1:]} == {second, third}
    assert all(o.error.startswith(journal.JOURNAL_LOST) for o in passed[1:])


def test_without_a_claim_noted_a_lost_journal_stops_nothing(clean_journal):
    tracker = SendJournal()
    tracker.client = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    tracker.claimed(claims(clean_journal))  # Redis already away: no note says "claimed"
    sent: list[int] = []

    passed = list(tracker.track(messages(*clean_journal), _provider(sent, clean_journal)))

    assert sent == clean_journal and all(o.sent for o in passed)
