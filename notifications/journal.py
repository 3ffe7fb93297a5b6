"""A send batch's progress, message by message, in Redis.

Outcomes reach PostgreSQL once per batch (one bulk update), which is what makes batches
fast. A worker killed mid-batch would then leave every claimed delivery in doubt. The
journal notes, for each delivery, that it was claimed, that it is being handed to the
provider, and that the provider took it, so the sweeper can tell the three apart: taken ->
sent, never tried -> sent again without a flag, in flight -> sent again flagged
``possible_duplicate``. At most one message per worker process is ever in flight, unless
its provider takes a whole batch in one call.

Each note names the attempt whose claim wrote it: a note left by an earlier attempt (this
claim's own note lost to a Redis blip) says nothing of this one, so the sweeper reads only
notes of the delivery's current attempt.

Writing the journal never stops a send: when Redis is away the entries are missing, and the
sweeper treats a delivery without entries as in doubt (flagged), as it would without one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from functools import cache

import redis
from django.conf import settings

from channels.base import AMBIGUOUS, Message, Outcome

log = logging.getLogger(__name__)

CLAIMED, TRYING, SENT = "claimed", "trying", "sent"


@cache
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)


def _key(delivery_id: int) -> str:
    return f"clarion:journal:{delivery_id}"


def _parse(value: bytes) -> tuple[str, int | None, str]:
    """(state, attempt, provider message id) of a note; attempt None for an unnumbered note."""
    head, _, message_id = value.decode().partition(":")
    state, _, attempt = head.partition("@")
    # Notes written before they carried an attempt (a batch sent across an upgrade).
    return state, int(attempt) if attempt.isdigit() else None, message_id


class SendJournal:
    def __init__(self) -> None:
        url = settings.REDIS_URL
        self.client = _client(url) if url else None
        self.attempts: dict[int, int] = {}

    def _note(self, delivery_id: int, state: str, message_id: str = "") -> tuple[int, str]:
        return delivery_id, f"{state}@{self.attempts.get(delivery_id, 0)}:{message_id}"

    def _write(self, entries: Iterable[tuple[int, str]]) -> None:
        if self.client is None:
            return
        entries = list(entries)
        ttl = settings.SEND_JOURNAL_TTL_SECONDS
        try:
            if len(entries) == 1:  # most writes: a pipeline would only add its own cost
                self.client.set(_key(entries[0][0]), entries[0][1], ex=ttl)
                return
            pipe = self.client.pipeline(transaction=False)
            for delivery_id, state in entries:
                pipe.set(_key(delivery_id), state, ex=ttl)
            pipe.execute()
        except redis.RedisError:
            self.unavailable()

    def unavailable(self) -> None:
        log.warning("send journal unavailable; a crash now would flag this batch")
        self.client = None  # one warning per batch, then send without it

    def claimed(self, attempts: Mapping[int, int]) -> None:
        """Note deliveries claimed, each with the attempt its claim counts."""
        self.attempts.update(attempts)
        self._write(self._note(i, CLAIMED) for i in attempts)

    def track(
        self, messages: list[Message], outcomes: Iterator[Outcome], *, whole_batch: bool = False
    ) -> Iterator[Outcome]:
        """Pass outcomes through, noting each and the message in flight after it.

        ``outcomes`` must send nothing before its first outcome is asked for. A provider that
        takes the ``whole_batch`` at once has every message in flight: all are noted first.
        """
        ids = [m.delivery_id for m in messages]
        stream = _Stream(self)
        try:
            if ids:
                stream.write([self._note(i, TRYING) for i in (ids if whole_batch else ids[:1])])
            for index, outcome in enumerate(outcomes):
                if outcome.sent:
                    entries = [self._note(outcome.delivery_id, SENT, outcome.provider_message_id)]
                elif outcome.error_kind == AMBIGUOUS:
                    entries = [self._note(outcome.delivery_id, TRYING)]  # the provider may have it
                else:
                    entries = [self._note(outcome.delivery_id, CLAIMED)]  # it never got there
                if index + 1 < len(ids):
                    entries.append(self._note(ids[index + 1], TRYING))
                # This outcome, and the next message now in flight: written before it goes.
                stream.write(entries)
                yield outcome
        finally:
            stream.close()


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

    def write(self, entries: list[tuple[int, str]]) -> None:
        if self.connection is None:
            return
        ttl = settings.SEND_JOURNAL_TTL_SECONDS
        commands = [("SET", _key(i), state, "EX", ttl) for i, state in entries]
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


def progress(attempts: Mapping[int, int]) -> dict[int, tuple[str, str]]:
    """What the journal knows of each delivery's current attempt: (state, provider message id).

    ``attempts`` maps each delivery to the attempt its last claim counted; a delivery whose
    note is absent, or was written by another attempt, is left out.
    """
    client = SendJournal().client
    if client is None or not attempts:
        return {}
    ids = list(attempts)
    try:
        values = client.mget([_key(i) for i in ids])
    except redis.RedisError:
        log.warning("send journal unavailable to the sweeper; stuck deliveries count as in doubt")
        return {}
    found: dict[int, tuple[str, str]] = {}
    for delivery_id, value in zip(ids, values, strict=True):
        if value is None:
            continue
        state, attempt, message_id = _parse(value)
        if attempt is None or attempt == attempts[delivery_id]:
            found[delivery_id] = (state, message_id)
    return found
