"""Circuit breakers and send rates, shared through Redis by every worker."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.core.cache import cache

from channels import breaker, ratelimit
from channels.breaker import Admission
from notifications import clock


@pytest.fixture
def limits(settings):
    settings.BREAKER_MIN_CALLS = 4
    settings.BREAKER_FAILURE_RATIO = 0.5
    settings.BREAKER_WINDOW_SECONDS = 60
    settings.BREAKER_OPEN_SECONDS = 30
    yield
    clock.reset()


def test_it_opens_on_the_failure_ratio_and_not_before_the_minimum_calls(limits):
    breaker.record("esp", Admission.ALL, ok=0, failed=3)
    assert breaker.admit("esp") is Admission.ALL  # 3 calls: below the minimum

    breaker.record("esp", Admission.ALL, ok=1, failed=0)
    breaker.record("esp", Admission.ALL, ok=0, failed=1)  # 4 of 5 failed

    assert breaker.state("esp").state == "open"
    assert breaker.admit("esp") is Admission.NONE


def test_successes_keep_it_closed(limits):
    breaker.record("esp", Admission.ALL, ok=9, failed=4)
    assert breaker.state("esp").state == "closed"


def test_closed_open_half_open_closed_with_one_probe(limits, caplog):
    breaker.record("esp", Admission.ALL, ok=0, failed=4)
    clock.advance(29)
    assert breaker.admit("esp") is Admission.NONE
    clock.advance(2)

    assert breaker.state("esp").state == "half-open"
    assert breaker.admit("esp") is Admission.PROBE
    assert breaker.admit("esp") is Admission.NONE  # the probe is out: nobody else goes
    breaker.record("esp", Admission.PROBE, ok=1, failed=0)

    assert breaker.state("esp").state == "closed"
    assert breaker.admit("esp") is Admission.ALL
    said = [r.getMessage() for r in caplog.records if r.name == "clarion.breaker"]
    assert [m.split(":")[0] for m in said] == [
        "breaker esp opened",
        "breaker esp half-open",
        "breaker esp closed",
    ]


def test_a_failed_probe_opens_it_again_for_a_full_period(limits):
    breaker.record("esp", Admission.ALL, ok=0, failed=4)
    clock.advance(31)
    assert breaker.admit("esp") is Admission.PROBE

    breaker.record("esp", Admission.PROBE, ok=0, failed=1)

    assert breaker.admit("esp") is Admission.NONE
    clock.advance(31)
    assert breaker.admit("esp") is Admission.PROBE


def test_a_probe_the_send_rate_held_back_frees_the_probe_for_the_next_batch(limits):
    breaker.record("esp", Admission.ALL, ok=0, failed=4)
    clock.advance(31)
    assert breaker.admit("esp") is Admission.PROBE

    breaker.record("esp", Admission.PROBE, ok=0, failed=0)  # nothing was sent

    assert breaker.state("esp").state == "half-open"
    assert breaker.admit("esp") is Admission.PROBE


def test_of_many_workers_at_half_open_exactly_one_probes(limits):
    breaker.record("esp", Admission.ALL, ok=0, failed=4)
    clock.advance(31)
    start = threading.Barrier(8)

    def ask(_):
        start.wait()
        return breaker.admit("esp")

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(ask, range(8)))

    assert answers.count(Admission.PROBE) == 1
    assert answers.count(Admission.NONE) == 7


def test_breakers_are_per_provider(limits):
    breaker.record("esp", Admission.ALL, ok=0, failed=4)
    assert breaker.admit("backup-esp") is Admission.ALL


def fresh_provider(settings, rate: float, burst: float) -> str:
    """A provider name of its own: buckets outlive a test in Redis."""
    name = f"esp-{uuid.uuid4().hex}"
    limit = {"rate_limit": {"rate": rate, "burst": burst}}
    settings.PROVIDERS = {**settings.PROVIDERS, name: limit}
    return name


def half_open_provider(settings, rate: float, burst: float) -> str:
    """A fresh provider whose breaker opened 31 s ago (``limits``): its next batch probes."""
    esp = fresh_provider(settings, rate, burst)
    breaker.record(esp, Admission.ALL, ok=0, failed=4)
    clock.advance(31)
    return esp


def test_workers_drawing_together_stay_under_the_send_rate(settings):
    esp = fresh_provider(settings, rate=50, burst=5)
    settings.RATE_LIMIT_MAX_WAIT_SECONDS = 0.5
    started = time.monotonic()

    def worker(_):
        total = 0
        while time.monotonic() - started < 1.0:
            total += ratelimit.acquire(esp, 3).granted
        return total

    with ThreadPoolExecutor(max_workers=4) as pool:
        granted = list(pool.map(worker, range(4)))
    elapsed = time.monotonic() - started

    # 50 a second plus the burst, whatever the number of workers.
    assert sum(granted) <= 50 * elapsed + 5 + 3
    assert sum(granted) >= 50 * 1.0 * 0.8


def test_what_the_rate_cannot_give_in_time_is_left_for_later(settings):
    esp = fresh_provider(settings, rate=1, burst=2)
    settings.RATE_LIMIT_MAX_WAIT_SECONDS = 0.1

    grant = ratelimit.acquire(esp, 5)

    assert grant.granted == 2
    assert 2.5 <= grant.wait_seconds <= 3.0


def test_a_provider_without_a_rate_is_not_limited():
    assert ratelimit.acquire("email", 10_000).granted == 10_000


def test_the_admin_shows_each_providers_breaker(limits, admin_client):
    breaker.record("email", Admission.ALL, ok=0, failed=4)

    page = admin_client.get("/admin/channels/providerevent/")

    assert page.status_code == 200
    states = {b.provider: b.state for b in page.context["breakers"]}
    assert states["email"] == "open"
    assert states["sms"] == "closed"
    assert 'class="breaker-open"' in page.text


def test_a_counter_that_expires_adds_up_and_carries_its_ttl():
    cache.incr_expiring("count-me", 3, 60)
    cache.incr_expiring("count-me", 2, 60)

    assert cache.get("count-me") == 5
    client = cache._cache.get_client(write=False)
    assert 0 < client.ttl(cache.make_and_validate_key("count-me")) <= 60


def test_a_provider_that_cannot_be_loaded_does_not_close_its_half_open_breaker(limits):
    from channels.base import PERMANENT, Message
    from notifications.dispatch import dispatch

    breaker.record("retired-esp", Admission.ALL, ok=0, failed=4)
    clock.advance(31)
    assert breaker.state("retired-esp").state == "half-open"

    [outcome] = dispatch("retired-esp", [Message(delivery_id=1, to="a@x.com", content={})])

    assert outcome.error_kind == PERMANENT and "retired-esp" in outcome.error
    # Nothing reached a provider: the probe is still to be sent, by a batch that can.
    assert breaker.state("retired-esp").state == "half-open"
    assert breaker.admit("retired-esp") is Admission.PROBE


def test_a_probe_given_back_unsent_leaves_the_breaker_half_open(limits):
    import redis as redis_client

    from channels.base import Message
    from notifications.dispatch import dispatch
    from notifications.journal import JOURNAL_LOST, SendJournal

    breaker.record("in_app", Admission.ALL, ok=0, failed=4)
    clock.advance(31)
    journal = SendJournal()
    journal.claimed({1: clock.now()})
    journal.client = redis_client.Redis.from_url("redis://127.0.0.1:1/0")  # lost since
    try:
        [outcome] = dispatch("in_app", [Message(delivery_id=1, to="ada", content={})], journal)
    finally:
        SendJournal().client.delete(*SendJournal().client.keys("clarion:journal:1:*"))

    assert outcome.error.startswith(JOURNAL_LOST)
    # It never reached the provider: no verdict on it, and the next batch probes.
    assert breaker.state("in_app").state == "half-open"
    assert breaker.admit("in_app") is Admission.PROBE


class FirstThenFails:
    """Hands over the first message; ``failure`` (if any) strikes while it holds the second."""

    def __init__(self, failure: BaseException | None):
        self.failure = failure

    def send_each(self, messages):
        from channels.base import Outcome

        for index, message in enumerate(messages):
            if index == 1 and self.failure is not None:
                raise self.failure
            yield Outcome.ok(message.delivery_id, f"msg-{index}")


@pytest.fixture
def batch_of_five():
    from channels.base import Message
    from notifications.journal import SendJournal

    ids = range(9_000_001, 9_000_006)  # journal keys of their own
    yield [Message(delivery_id=i, to="a@example.com", content={}) for i in ids]
    client = SendJournal().client
    for i in ids:
        if keys := client.keys(f"clarion:journal:{i}:*"):
            client.delete(*keys)


@pytest.mark.parametrize(
    ("failure", "given_back"),
    [
        (None, 0),  # all five went
        # The first went, the second may have (the provider held it), three never left.
        (ConnectionResetError("connection reset"), 3),
        (SoftTimeLimitExceeded(), 3),
    ],
)
def test_the_send_rate_tokens_of_messages_that_never_left_are_given_back(
    settings, monkeypatch, batch_of_five, failure, given_back
):
    from notifications import dispatch

    esp = fresh_provider(settings, rate=0.001, burst=10)  # no refill to speak of
    monkeypatch.setattr(dispatch, "get_provider", lambda name: FirstThenFails(failure))

    try:
        outcomes = dispatch.dispatch(esp, batch_of_five)
    except dispatch.OutOfTime as cut:
        outcomes = cut.outcomes

    assert [o.sent for o in outcomes] == [True] + [failure is None] * 4
    assert ratelimit.take(esp, 10).granted == 5 + given_back


def test_a_batch_given_back_when_its_journal_is_lost_gives_its_tokens_back(
    settings, monkeypatch, batch_of_five
):
    import redis as redis_client

    from notifications import dispatch
    from notifications.journal import JOURNAL_LOST, SendJournal

    esp = fresh_provider(settings, rate=0.001, burst=10)
    monkeypatch.setattr(dispatch, "get_provider", lambda name: FirstThenFails(None))
    journal = SendJournal()
    journal.claimed({m.delivery_id: clock.now() for m in batch_of_five})
    journal.client = redis_client.Redis.from_url("redis://127.0.0.1:1/0")  # lost since

    outcomes = dispatch.dispatch(esp, batch_of_five, journal)

    assert all(o.error.startswith(JOURNAL_LOST) for o in outcomes)
    assert ratelimit.take(esp, 10).granted == 10


class FailsToQuit:
    """Sends each message as asked; ``error`` is raised while its connection closes."""

    def __init__(self, error: type[BaseException] = SoftTimeLimitExceeded):
        self.error = error

    def send_each(self, messages):
        from channels.base import Outcome

        try:
            for index, message in enumerate(messages):
                yield Outcome.ok(message.delivery_id, f"msg-{index}")
        except GeneratorExit:
            raise self.error() from None


def lose_redis_after_the_first_message(monkeypatch) -> None:
    from notifications import journal

    write = journal._Stream.write
    writes = []

    def lose(stream, entries):
        writes.append(entries)
        if len(writes) == 2:  # the first outcome's note: Redis is gone
            stream._lost()
            return
        write(stream, entries)

    monkeypatch.setattr(journal._Stream, "write", lose)


def test_time_running_out_while_the_journal_gives_a_batch_back_sends_nothing_more(
    settings, monkeypatch, batch_of_five
):
    from notifications import dispatch, journal

    esp = fresh_provider(settings, rate=0.001, burst=10)
    monkeypatch.setattr(dispatch, "get_provider", lambda name: FailsToQuit())
    lose_redis_after_the_first_message(monkeypatch)
    notes = journal.SendJournal()
    notes.claimed({m.delivery_id: clock.now() for m in batch_of_five})

    with pytest.raises(dispatch.OutOfTime) as cut:
        dispatch.dispatch(esp, batch_of_five, notes)

    # The provider took the first; the journal was giving back the rest when time ran out,
    # so none of them is in doubt, and their tokens go back.
    first, *rest = cut.value.outcomes
    assert first.sent
    assert [o.error for o in rest] == [o.error for o in journal.given_back([0])] * 4
    assert ratelimit.take(esp, 10).granted == 9


def test_an_error_while_the_journal_gives_a_batch_back_leaves_nothing_in_doubt(
    settings, monkeypatch, batch_of_five
):
    from notifications import dispatch, journal

    esp = fresh_provider(settings, rate=0.001, burst=10)
    monkeypatch.setattr(dispatch, "get_provider", lambda name: FailsToQuit(OSError))
    lose_redis_after_the_first_message(monkeypatch)
    counted = []
    monkeypatch.setattr(
        dispatch, "_count", lambda name, admission, ok, failed: counted.append((ok, failed))
    )
    notes = journal.SendJournal()
    notes.claimed({m.delivery_id: clock.now() for m in batch_of_five})

    first, *rest = dispatch.dispatch(esp, batch_of_five, notes)

    # Given back as the journal would have had closing the stream not failed: no attempt
    # spent, nothing counted against the provider, the tokens back.
    assert first.sent
    assert [o.error for o in rest] == [o.error for o in journal.given_back([0])] * 4
    assert counted == [(1, 0)]
    assert ratelimit.take(esp, 10).granted == 9


def test_tokens_given_back_never_fill_the_bucket_past_its_burst(settings):
    esp = fresh_provider(settings, rate=0.001, burst=4)
    assert ratelimit.take(esp, 1).granted == 1

    ratelimit.give_back(esp, 3)

    assert ratelimit.take(esp, 10).granted == 4


def test_an_smtp_server_that_cannot_be_reached_costs_no_send_rate(settings, batch_of_five):
    from channels.registry import reset
    from notifications.dispatch import dispatch
    from tests.support.ports import free_port

    esp = fresh_provider(settings, rate=0.001, burst=10)
    settings.PROVIDERS[esp] |= {
        "backend": "channels.email.EmailProvider",
        "channel": "email",
        "options": {
            "backend": "django.core.mail.backends.smtp.EmailBackend",
            "connection_options": {"host": "127.0.0.1", "port": free_port(), "timeout": 2},
        },
    }
    reset()
    try:
        outcomes = dispatch(esp, batch_of_five)
    finally:
        reset()

    assert all(o.error.startswith("connect:") for o in outcomes)
    assert not any(o.reached_provider for o in outcomes)
    assert ratelimit.take(esp, 10).granted == 10


class NeverCalled:
    def send_each(self, messages):
        raise AssertionError("nothing may be sent once the task is out of time")


def test_time_running_out_while_waiting_for_the_send_rate_gives_the_tokens_back(
    settings, monkeypatch, batch_of_five
):
    from notifications import dispatch

    esp = fresh_provider(settings, rate=0.001, burst=2)
    settings.RATE_LIMIT_MAX_WAIT_SECONDS = 3600
    monkeypatch.setattr(dispatch, "get_provider", lambda name: NeverCalled())
    monkeypatch.setattr(ratelimit.time, "sleep", _soft_time_limit)

    with pytest.raises(dispatch.OutOfTime) as cut:
        dispatch.dispatch(esp, batch_of_five)

    # All five are retried as never tried, and the two tokens granted before the wait are back.
    assert [o.error for o in cut.value.outcomes] == [dispatch.OUT_OF_TIME_NOT_SENT] * 5
    assert ratelimit.take(esp, 10).granted == 2


def test_time_running_out_while_waiting_for_the_send_rate_frees_a_half_open_probe(
    limits, settings, monkeypatch, batch_of_five
):
    from notifications import dispatch

    esp = half_open_provider(settings, rate=0.001, burst=1)
    ratelimit.take(esp, 1)  # the bucket is empty: the probe has to wait for a token
    settings.RATE_LIMIT_MAX_WAIT_SECONDS = 3600
    monkeypatch.setattr(dispatch, "get_provider", lambda name: NeverCalled())
    monkeypatch.setattr(ratelimit.time, "sleep", _soft_time_limit)

    with pytest.raises(dispatch.OutOfTime) as cut:
        dispatch.dispatch(esp, batch_of_five)

    # The probe is retried as never tried; its batch-mates go where an open circuit sends them.
    errors = [o.error for o in cut.value.outcomes]
    assert errors[0] == dispatch.OUT_OF_TIME_NOT_SENT
    assert all(e.startswith(dispatch.CIRCUIT_OPEN) for e in errors[1:]) and len(errors) == 5
    assert breaker.admit(esp) is Admission.PROBE  # the next batch probes, without waiting


class Unreachable:
    """Answers every message as a provider's own code does when it cannot connect."""

    def send_each(self, messages):
        from channels.base import TRANSIENT, Outcome

        for m in messages:
            yield Outcome.failed(
                m.delivery_id, TRANSIENT, "connect: refused", reached_provider=False
            )


class NoPhoneNumbers:
    """Refuses every message before calling its API, as the SMS adapter does with no number."""

    def send_each(self, messages):
        from channels.base import PERMANENT, Outcome

        for m in messages:
            yield Outcome.failed(
                m.delivery_id, PERMANENT, "recipient has no phone number", reached_provider=False
            )


@pytest.mark.parametrize(
    ("probe", "verdict"), [(lambda: FirstThenFails(None), "closed"), (Unreachable, "open")]
)
def test_time_running_out_while_giving_tokens_back_still_settles_the_breaker(
    limits, settings, monkeypatch, batch_of_five, probe, verdict
):
    from notifications import dispatch

    esp = half_open_provider(settings, rate=0.001, burst=10)
    provider = probe()
    monkeypatch.setattr(dispatch, "get_provider", lambda name: provider)
    monkeypatch.setattr(ratelimit, "give_back", _soft_time_limit)

    with pytest.raises(dispatch.OutOfTime) as cut:
        dispatch.dispatch(esp, batch_of_five)

    answer = next(provider.send_each(batch_of_five[:1]))
    assert cut.value.outcomes[0] == answer  # the probe's outcome is kept
    assert breaker.state(esp).state == verdict  # and counted


def test_time_running_out_while_the_breaker_counts_still_gives_the_tokens_back(
    settings, monkeypatch, batch_of_five
):
    from notifications import dispatch

    esp = fresh_provider(settings, rate=0.001, burst=10)
    monkeypatch.setattr(dispatch, "get_provider", lambda name: Unreachable())
    monkeypatch.setattr(breaker, "record", _soft_time_limit)

    with pytest.raises(dispatch.OutOfTime) as cut:
        dispatch.dispatch(esp, batch_of_five)

    assert len(cut.value.outcomes) == 5
    assert ratelimit.take(esp, 10).granted == 10


def test_a_probe_clarion_refused_before_sending_leaves_the_breaker_half_open(
    limits, settings, monkeypatch, batch_of_five
):
    from notifications import dispatch

    esp = half_open_provider(settings, rate=100, burst=10)
    # Refused by the adapter itself, so no verdict on the provider.
    monkeypatch.setattr(dispatch, "get_provider", lambda name: NoPhoneNumbers())

    dispatch.dispatch(esp, batch_of_five)

    assert breaker.state(esp).state == "half-open"
    assert breaker.admit(esp) is Admission.PROBE


def test_time_running_out_while_redis_is_lost_mid_wait_still_stops_the_task(
    settings, monkeypatch, batch_of_five
):
    import redis as redis_client

    from notifications import dispatch

    esp = fresh_provider(settings, rate=0.001, burst=2)
    settings.RATE_LIMIT_MAX_WAIT_SECONDS = 3600
    take = ratelimit.take
    calls = []

    def take_then_lose_redis(provider, want):
        calls.append(want)
        if len(calls) > 1:
            raise redis_client.ConnectionError("Redis went away")
        return take(provider, want)

    monkeypatch.setattr(dispatch, "get_provider", lambda name: NeverCalled())
    monkeypatch.setattr(ratelimit.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(ratelimit, "take", take_then_lose_redis)
    # Giving the two tokens back waits on the lost Redis, and the time limit strikes there.
    monkeypatch.setattr(ratelimit, "give_back", _soft_time_limit)

    with pytest.raises(dispatch.OutOfTime) as cut:
        dispatch.dispatch(esp, batch_of_five)

    assert [o.error for o in cut.value.outcomes] == [dispatch.OUT_OF_TIME_NOT_SENT] * 5


class AnswersThenRunsOutOfTime:
    """The provider answers the first message 503; the time limit strikes after it."""

    def send_each(self, messages):
        from channels.base import TRANSIENT, Outcome

        yield Outcome.failed(messages[0].delivery_id, TRANSIENT, "HTTP 503")
        raise SoftTimeLimitExceeded()


def test_what_the_provider_answered_before_the_time_limit_counts_for_its_breaker(
    limits, settings, monkeypatch, batch_of_five
):
    from notifications import dispatch

    esp = half_open_provider(settings, rate=100, burst=10)
    monkeypatch.setattr(dispatch, "get_provider", lambda name: AnswersThenRunsOutOfTime())

    with pytest.raises(dispatch.OutOfTime):
        dispatch.dispatch(esp, batch_of_five)

    assert breaker.state(esp).state == "open"  # the probe failed, whatever came after


def _soft_time_limit(*args, **kwargs):
    raise SoftTimeLimitExceeded()
