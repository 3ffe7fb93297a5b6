"""Hand a batch of messages to one provider, through its breaker and send rate.

A crash becomes outcomes, never an exception; every outcome is noted in the send journal
as it comes (notifications/journal.py). Redis failing under the breaker or the send rate
never strands a batch: an unknown breaker lets the batch go, an unknown send rate defers it
(nothing is sent past a provider's limit), and a batch the provider took is recorded even
when its breaker cannot count it.
"""

from __future__ import annotations

import logging

import redis
from celery.exceptions import SoftTimeLimitExceeded

from channels import breaker, ratelimit
from channels.base import (
    AMBIGUOUS,
    PERMANENT,
    TRANSIENT,
    Message,
    Outcome,
    send_stream,
    sends_each,
)
from channels.registry import get_provider

from .journal import JOURNAL_LOST, SendJournal, given_back

log = logging.getLogger(__name__)

# Prefixes notifications/outcomes.py acts on: an open circuit falls back at once; a rate
# limit is waited out without spending an attempt.
CIRCUIT_OPEN = "circuit open"
RATE_LIMITED = "rate limited"
# How long a batch waits when its provider's send rate cannot be read: past the broker's
# countdowns, so it is parked in PostgreSQL while Redis is away.
RATE_UNKNOWN_WAIT_SECONDS = 30.0
# Messages Clarion did not send (cut short, or never tried): retried as transient failures.
NOT_SENT = "not sent"
# The soft time limit struck: the task stops sending, and says so of what it did not send.
OUT_OF_TIME = "the task ran out of time"
# Never tried because the task ran out of time: retried without spending an attempt.
OUT_OF_TIME_NOT_SENT = f"{NOT_SENT}: {OUT_OF_TIME}"
# Never tried because the batch had sent for SEND_BATCH_SECONDS: queued again a moment later,
# spending no attempt, and counted by no breaker (the batch ran long, not the provider).
BATCH_TIME_SPENT = f"{NOT_SENT}: the batch's time is spent"
BATCH_TIME_SPENT_RETRY_SECONDS = 1.0


class OutOfTime(Exception):
    """The soft time limit struck mid-dispatch; ``outcomes`` covers the provider's batch.

    The first ``answered`` of them were known before the strike; ``_verdict`` counts the
    provider's answers among them for its breaker (the task ran out of time, not the
    provider), not the journal's give-backs or Clarion's own refusals.
    """

    def __init__(self, outcomes: list[Outcome], answered: int = 0) -> None:
        super().__init__(OUT_OF_TIME)
        self.outcomes = outcomes
        self.answered = answered


def not_sent(messages: list[Message], reason: str) -> list[Outcome]:
    """Outcomes of messages that never left: retried as any transient failure is."""
    return not_sent_ids([m.delivery_id for m in messages], reason)


def not_sent_ids(delivery_ids: list[int], reason: str) -> list[Outcome]:
    return [
        Outcome.failed(delivery_id, TRANSIENT, f"{NOT_SENT}: {reason}", reached_provider=False)
        for delivery_id in delivery_ids
    ]


def time_spent(delivery_ids: list[int]) -> list[Outcome]:
    """Outcomes of messages a batch out of time never handed over."""
    return [
        Outcome.failed(
            delivery_id,
            TRANSIENT,
            BATCH_TIME_SPENT,
            retry_after=BATCH_TIME_SPENT_RETRY_SECONDS,
            reached_provider=False,
        )
        for delivery_id in delivery_ids
    ]


def dispatch(
    provider_name: str, messages: list[Message], journal: SendJournal | None = None
) -> list[Outcome]:
    journal = journal or SendJournal()
    if journal.stops_now():
        return time_spent([m.delivery_id for m in messages])
    try:
        provider = get_provider(provider_name)
    except SoftTimeLimitExceeded as exc:
        raise OutOfTime(not_sent(messages, OUT_OF_TIME)) from exc
    except Exception as exc:  # noqa: BLE001 - a provider retired from PROVIDERS, a bad backend
        log.exception("provider %s cannot be loaded", provider_name)
        # Nothing was sent, and its breaker counts nothing (a half-open one keeps its probe
        # for a batch that can go): each message goes to its next hop, or fails with none.
        return [
            Outcome.failed(
                m.delivery_id,
                PERMANENT,
                f"provider {provider_name}: {exc!r}",
                reached_provider=False,
            )
            for m in messages
        ]
    try:
        admission = _admit(provider_name)
    except SoftTimeLimitExceeded as exc:
        # Nothing was sent. (A probe lock taken just as time ran out stays to its timeout.)
        raise OutOfTime(not_sent(messages, OUT_OF_TIME)) from exc
    if admission is breaker.Admission.NONE:
        return [_circuit_open(provider_name, m) for m in messages]
    # Half-open: one message is the probe; the rest of the batch goes elsewhere.
    allowed = messages[:1] if admission is breaker.Admission.PROBE else messages
    refused = messages[len(allowed) :]
    try:
        grant = _acquire(provider_name, len(allowed))
    except SoftTimeLimitExceeded as exc:
        # Struck while waiting for the send rate: nothing was sent, and the tokens taken so
        # far went back if Redis allowed (channels/ratelimit.py). A half-open breaker's probe
        # is freed.
        _count(provider_name, admission, ok=0, failed=0)
        refusals = [_circuit_open(provider_name, m) for m in refused]
        raise OutOfTime(not_sent(allowed, OUT_OF_TIME) + refusals) from exc
    now, later = allowed[: grant.granted], allowed[grant.granted :]
    held_back = [_circuit_open(provider_name, m) for m in refused] + [
        Outcome.failed(
            m.delivery_id,
            TRANSIENT,
            f"{RATE_LIMITED}: {provider_name} is at its send rate",
            retry_after=grant.wait_seconds,
            reached_provider=False,
        )
        for m in later
    ]
    try:
        outcomes = _send(provider, provider_name, now, journal)
    except OutOfTime as cut:
        # What the provider answered counts, not the cut itself. A half-open breaker's probe
        # is settled or freed either way.
        _count(provider_name, admission, *_verdict(cut.outcomes[: cut.answered]))
        _give_back(provider_name, cut.outcomes)  # before held_back joins: it took no tokens
        cut.outcomes += held_back
        raise
    try:
        try:
            _count(provider_name, admission, *_verdict(outcomes))
        finally:
            _give_back(provider_name, outcomes)  # even when time runs out in the count
    except SoftTimeLimitExceeded as exc:
        raise OutOfTime(outcomes + held_back) from exc  # sent: the outcomes must be kept
    return outcomes + held_back


def _verdict(outcomes: list[Outcome]) -> tuple[int, int]:
    """(ok, failed) of a batch for its provider's breaker.

    A failure is transient or ambiguous, but not a message given back because the send
    journal was lost. A success is what the provider took or refused: not what Clarion
    refused itself before sending (no address, say), which says nothing of its health.
    """
    failed = sum(
        1
        for o in outcomes
        if o.error_kind in (TRANSIENT, AMBIGUOUS)
        and not o.error.startswith((JOURNAL_LOST, BATCH_TIME_SPENT))
    )
    ok = sum(1 for o in outcomes if o.reached_provider and o.error_kind in ("", PERMANENT))
    return ok, failed


def _admit(provider_name: str) -> breaker.Admission:
    try:
        return breaker.admit(provider_name)
    except redis.RedisError:
        log.warning("breaker of %s unavailable; sending without it", provider_name)
        return breaker.Admission.ALL


def _acquire(provider_name: str, want: int) -> ratelimit.Grant:
    try:
        return ratelimit.acquire(provider_name, want)
    except redis.RedisError:
        log.warning("send rate of %s unavailable; its batch waits", provider_name)
        return ratelimit.Grant(0, RATE_UNKNOWN_WAIT_SECONDS)


def _give_back(provider_name: str, outcomes: list[Outcome]) -> None:
    """Return the send-rate tokens of the granted messages that never reached the provider.

    ``outcomes`` are those of the messages tokens were taken for, and only those.
    """
    unsent = sum(1 for o in outcomes if not o.reached_provider)
    try:
        ratelimit.give_back(provider_name, unsent)
    except redis.RedisError:
        log.warning("send rate of %s unavailable; %d tokens not given back", provider_name, unsent)


def _count(provider_name: str, admission: breaker.Admission, ok: int, failed: int) -> None:
    try:
        breaker.record(provider_name, admission, ok=ok, failed=failed)
    except redis.RedisError:
        # The batch is sent: its outcomes must be recorded whether or not it was counted.
        log.warning(
            "breaker of %s unavailable; %d outcomes not counted", provider_name, ok + failed
        )


def _circuit_open(provider_name: str, message: Message) -> Outcome:
    # Where no backup takes it, it waits for the breaker's next probe (notifications/outcomes.py).
    return Outcome.failed(
        message.delivery_id,
        TRANSIENT,
        f"{CIRCUIT_OPEN}: {provider_name}",
        retry_after=breaker.limits(provider_name).open_seconds,
        reached_provider=False,
    )


def _send(
    provider, provider_name: str, messages: list[Message], journal: SendJournal
) -> list[Outcome]:
    if not messages:
        return []
    outcomes: list[Outcome] = []
    try:
        stream = send_stream(provider, messages)
        outcomes.extend(journal.track(messages, stream, whole_batch=not sends_each(provider)))
        if journal.stopped_after is not None:
            outcomes.extend(time_spent([m.delivery_id for m in messages[len(outcomes) :]]))
    except SoftTimeLimitExceeded as exc:
        cut = _cut_short(provider, messages[len(outcomes) :], OUT_OF_TIME, journal)
        raise OutOfTime(outcomes + cut, answered=len(outcomes)) from exc
    except Exception as exc:  # noqa: BLE001 - the provider may have taken some of them
        log.exception("provider %s crashed on a batch of %d", provider_name, len(messages))
        outcomes.extend(_cut_short(provider, messages[len(outcomes) :], repr(exc), journal))
    return outcomes


def _cut_short(provider, rest: list[Message], reason: str, journal: SendJournal) -> list[Outcome]:
    """Outcomes of a provider call cut short before answering for ``rest``.

    A streaming provider was handing over the first of them; the others never left. Of a
    whole-batch provider, any may have been taken. Cut short while the journal gave the
    batch back or stopped it for time (closing the provider's stream, say), the provider
    was handed none of them: they are answered for as the journal would have.
    """
    if journal.giving_back:
        return given_back([m.delivery_id for m in rest])
    if rest and journal.stopped_after not in (None, rest[0].delivery_id):
        # Cut short once the message in flight had its answer (closing the stream, say).
        return time_spent([m.delivery_id for m in rest])
    in_doubt = rest[:1] if sends_each(provider) else rest
    return [Outcome.failed(m.delivery_id, AMBIGUOUS, reason) for m in in_doubt] + not_sent(
        rest[len(in_doubt) :], reason
    )
