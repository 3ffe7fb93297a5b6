"""A send batch's progress, message by message, in Redis.

Outcomes reach PostgreSQL once per batch (one bulk update), which is what makes batches
fast. A worker killed mid-batch would then leave every claimed delivery in doubt. The
journal notes, for each delivery, that it was claimed, that it is being handed to the
provider, and that the provider took it, so the sweeper can tell the three apart: taken ->
sent, never tried -> sent again without a flag, in flight -> sent again flagged
``possible_duplicate``. At most one message per worker process is ever in flight, unless
its provider takes a whole batch in one call.

Each claim keeps its notes under its own key, named by the claim's time (``claimed_at``,
which every claim sets anew): a note left by an earlier claim, when this claim's own was
lost to a Redis blip, says nothing of this one. An attempt number would not do: an attempt
never tried (rate limited, circuit open) is given back, and the next claim counts it again.

Writing the journal never stops sending: when Redis is away the entries are missing, and the
sweeper treats a delivery without entries as in doubt (flagged), as it would without one.
One case differs: Redis lost after the claim was noted. The claim's notes still say "never
tried", and a crash would have the sweeper resend unflagged what went out since; so the
rest of that batch is given back unsent (no attempt spent) and sent again in a moment.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from functools import cache

import redis
from django.conf import settings

from channels.base import AMBIGUOUS, TRANSIENT, Message, Outcome

log = logging.getLogger(__name__)

CLAIMED, TRYING, SENT = "claimed", "trying", "sent"
# The error of a message given back unsent when the journal was lost mid-batch: like a rate
# limit, it spends no attempt and is not counted by the provider's breaker.
JOURNAL_LOST = "journal lost"
GIVEN_BACK_RETRY_SECONDS = 5.0


@cache
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def note_key(delivery_id: int, claimed_at: datetime | None) -> str:
    """Where one claim of a delivery keeps its note."""
    claim = (claimed_at - _EPOCH) // timedelta(microseconds=1) if claimed_at else 0
    return f"clarion:journal:{delivery_id}:{claim}"


class SendJournal:
    def __init__(self) -> None:
        url = settings.REDIS_URL
        self.client = _client(url) if url else None
        self.claims: dict[int, datetime] = {}
        # Whether notes of the claim stand in Redis, saying "claimed" until changed.
        self.claim_noted = False
        # Whether a batch is being given back: set for the rest of this send batch, as no
        # provider is handed any more of it (like a stuck note, it is not undone).
        self.giving_back = False
        # Past this moment the batch renders and hands out no more messages: the rest go back
        # to the queue (notifications/dispatch.py), long before the task's time limit could
        # strike mid-call and leave a message in doubt. Never before one message has been
        # handed to a provider, so every batch makes progress, however slow.
        self.deadline = time.monotonic() + settings.SEND_BATCH_SECONDS
        self.handed = False
        # The message after which ``track`` stopped a stream for time (None: not stopped).
        self.stopped_after: int | None = None

    def _note(self, delivery_id: int, state: str, message_id: str = "") -> tuple[str, str]:
        key = note_key(delivery_id, self.claims.get(delivery_id))
        return key, f"{state}:{message_id}" if message_id else state

    def _write(self, entries: Iterable[tuple[str, str]]) -> None:
        if self.client is None:
            return
        entries = list(entries)
        ttl = settings.SEND_JOURNAL_TTL_SECONDS
        try:
            if len(entries) == 1:  # most writes: a pipeline would only add its own cost
                self.client.set(*entries[0], ex=ttl)
                return
            pipe = self.client.pipeline(transaction=False)
            for key, note in entries:
                pipe.set(key, note, ex=ttl)
            pipe.execute()
        except redis.RedisError:
            self.unavailable()

    def unavailable(self) -> None:
        log.warning("send journal unavailable; a crash now would flag this batch")
        self.client = None  # one warning per batch, then send without it

    def claimed(self, claims: Mapping[int, datetime]) -> None:
        """Note deliveries claimed, each with its claim's ``claimed_at``."""
        self.claims.update(claims)
        self._write(self._note(i, CLAIMED) for i in claims)
        self.claim_noted = self.client is not None

    def out_of_time(self) -> bool:
        return time.monotonic() >= self.deadline

    def stops_now(self) -> bool:
        """Out of time, and one message has been handed over already."""
        return self.handed and self.out_of_time()

    def track(
        self, messages: list[Message], outcomes: Iterator[Outcome], *, whole_batch: bool = False
    ) -> Iterator[Outcome]:
        """Pass outcomes through, noting each and the message in flight after it.

        ``outcomes`` must send nothing before its first outcome is asked for. A provider that
        takes the ``whole_batch`` at once has every message in flight: all are noted first.
        Once the batch is out of time, a stream stops after the message in flight, named in
        ``stopped_after``: the caller answers for the rest.
        """
        ids = [m.delivery_id for m in messages]
        stream = _Stream(self)
        try:
            if ids:
                stream.write([self._note(i, TRYING) for i in (ids if whole_batch else ids[:1])])
                if self._notes_stuck():
                    self.giving_back = True
                    yield from _given_back(ids, outcomes)
                    return
                self.handed = True
            for index, outcome in enumerate(outcomes):
                more = index + 1 < len(ids)
                # Out of time, the next message is neither noted in flight nor sent.
                late = more and not whole_batch and self.out_of_time()
                if outcome.sent:
                    entries = [self._note(outcome.delivery_id, SENT, outcome.provider_message_id)]
                elif outcome.error_kind == AMBIGUOUS:
                    entries = [self._note(outcome.delivery_id, TRYING)]  # the provider may have it
                else:
                    entries = [self._note(outcome.delivery_id, CLAIMED)]  # it never got there
                if late:
                    # Set first: cut short from here on, only this message's answer is unknown.
                    self.stopped_after = outcome.delivery_id
                elif more:
                    entries.append(self._note(ids[index + 1], TRYING))
                # This outcome, and the next message now in flight: written before it goes.
                stream.write(entries)
                yield outcome
                if late:
                    _close(outcomes)
                    return
                # A whole batch went in one call: none of it is left to hold back.
                if not whole_batch and more and self._notes_stuck():
                    self.giving_back = True
                    yield from _given_back(ids[index + 1 :], outcomes)
                    return
        finally:
            stream.close()

    def _notes_stuck(self) -> bool:
        """The claim's "claimed" notes stand, and Redis has been lost since: they can no
        longer be changed (for this batch, whichever provider group lost it)."""
        return self.claim_noted and self.client is None


def _given_back(ids: list[int], outcomes: Iterator[Outcome]) -> Iterator[Outcome]:
    _close(outcomes)
    yield from given_back(ids)


def _close(outcomes: Iterator[Outcome]) -> None:
    close = getattr(outcomes, "close", None)
    if close is not None:
        close()  # a provider's stream sends nothing more (and closes its connection)


def given_back(ids: list[int]) -> list[Outcome]:
    """Outcomes of messages held back, unsent, because the journal was lost: no attempt
    spent, nothing counted against the provider."""
    return [
        Outcome.failed(
            delivery_id,
            TRANSIENT,
            f"{JOURNAL_LOST}: not sent, so that a crash cannot resend it unflagged",
            retry_after=GIVEN_BACK_RETRY_SECONDS,
            reached_provider=False,
        )
        for delivery_id in ids
    ]


class _Stream:
    """A batch's journal writes, sent without waiting for each reply.

    What the journal guards against is a worker killed mid-batch. Once a write has been
    handed to the kernel, the worker's death does not stop it: closing the dead process's
    socket still sends what it holds, in order, so Redis gets the note before it could learn
    of the send it precedes. Waiting for each reply cost a loopback round trip per message
    (~0.13 ms here); the replies are read once, when the batch is done. Only the loss of
    the whole machine could lose a note in flight, and Redis keeps its notes in memory.
    """

    def __init__(self, journal: SendJournal) -> None:
        self.journal = journal
        self.unread = 0
        self.connection = None
        if journal.client is not None:
            try:
                self.connection = journal.client.connection_pool.get_connection()
            except redis.RedisError:
                journal.unavailable()

    def write(self, entries: list[tuple[str, str]]) -> None:
        if self.connection is None:
            return
        ttl = settings.SEND_JOURNAL_TTL_SECONDS
        commands = [("SET", key, note, "EX", ttl) for key, note in entries]
        try:
            self.connection.send_packed_command(self.connection.pack_commands(commands))
        except redis.RedisError:
            self._lost()
            return
        self.unread += len(commands)

    def close(self) -> None:
        if self.connection is None:
            return
        try:
            for _ in range(self.unread):
                self.connection.read_response()
        except redis.RedisError:
            self._lost()
            return
        self.journal.client.connection_pool.release(self.connection)
        self.connection = None

    def _lost(self) -> None:
        # Replies may be left unread on it: never hand this connection back as it is.
        self.connection.disconnect()
        self.journal.client.connection_pool.release(self.connection)
        self.connection = None
        self.journal.unavailable()


def progress(claims: Mapping[int, datetime]) -> dict[int, tuple[str, str]]:
    """What the journal knows of each delivery's last claim: (state, provider message id).

    ``claims`` maps each delivery to its ``claimed_at``; a delivery with no note of that
    claim is left out.
    """
    client = SendJournal().client
    if client is None or not claims:
        return {}
    ids = list(claims)
    try:
        values = client.mget([note_key(i, claims[i]) for i in ids])
    except redis.RedisError:
        log.warning("send journal unavailable to the sweeper; stuck deliveries count as in doubt")
        return {}
    found: dict[int, tuple[str, str]] = {}
    for delivery_id, value in zip(ids, values, strict=True):
        if value is not None:
            state, _, message_id = value.decode().partition(":")
            found[delivery_id] = (state, message_id)
    return found
