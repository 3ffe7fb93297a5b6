"""The small interface every channel adapter implements.

A channel sends a batch of rendered messages over one provider connection and returns one
Outcome per message, in order. An outcome is sent (with the provider's message id) or an
error of one kind:

- transient: nothing reached the provider, or it asked us to come back (``retry_after``);
- permanent: the provider will never accept it (invalid address, hard bounce, other 4xx);
- ambiguous: the request may have reached the provider; retry on the same provider only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

TRANSIENT = "transient"
PERMANENT = "permanent"
AMBIGUOUS = "ambiguous"


@dataclass(frozen=True)
class Message:
    """One rendered message for one recipient on one channel."""

    delivery_id: int
    # Email address, E.164 number, webhook URL or recipient external id (in-app).
    to: str
    # Rendered parts by channel: email subject/html/text; sms text; in_app title/body/link;
    # webhook payload (a JSON-serialisable object).
    content: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    # Plain data the adapter may need (recipient id, notification id, type key, ...).
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    delivery_id: int
    error_kind: str = ""  # "" when sent
    provider_message_id: str = ""
    error: str = ""
    retry_after: float | None = None
    # True when the provider has it or may have it; False only when it certainly failed
    # before anything was handed over (not connected, given back, refused by Clarion
    # itself). The dispatcher returns the send-rate tokens of such outcomes among the
    # messages it took tokens for.
    reached_provider: bool = True

    @property
    def sent(self) -> bool:
        return not self.error_kind

    @classmethod
    def ok(cls, delivery_id: int, provider_message_id: str = "") -> Outcome:
        return cls(delivery_id, provider_message_id=provider_message_id)

    @classmethod
    def failed(
        cls,
        delivery_id: int,
        kind: str,
        error: str,
        retry_after: float | None = None,
        *,
        reached_provider: bool = True,
    ) -> Outcome:
        return cls(
            delivery_id,
            error_kind=kind,
            error=error[:2000],
            retry_after=retry_after,
            reached_provider=reached_provider,
        )


class Provider(Protocol):
    """A provider backend for one channel (an ESP, an SMS gateway, an HTTP poster)."""

    name: str
    channel: str

    def send_batch(self, messages: list[Message]) -> list[Outcome]: ...


def send_stream(provider: Provider, messages: list[Message]) -> Iterator[Outcome]:
    """Outcomes in message order, each as soon as its message is handed over.

    A provider that sends one message at a time offers ``send_each`` (a generator), so the
    caller can note each outcome before the next message goes: a worker killed mid-batch
    then leaves at most one message in doubt. Others answer for the whole batch at once,
    with every message in doubt while they run. Either way nothing is sent before the
    first outcome is asked for, so the caller can note what is about to go.
    """
    if sends_each(provider):
        return provider.send_each(messages)
    return _whole_batch(provider, messages)


def sends_each(provider: Provider) -> bool:
    return hasattr(provider, "send_each")


def _whole_batch(provider: Provider, messages: list[Message]) -> Iterator[Outcome]:
    yield from provider.send_batch(messages)
