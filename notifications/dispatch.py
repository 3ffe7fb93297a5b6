"""Hand a batch of messages to one provider; a crash becomes outcomes, never an exception."""

from __future__ import annotations

import logging

from channels.base import AMBIGUOUS, Message, Outcome
from channels.registry import get_provider

log = logging.getLogger(__name__)


def dispatch(provider_name: str, messages: list[Message]) -> list[Outcome]:
    try:
        return get_provider(provider_name).send_batch(messages)
    except Exception as exc:  # noqa: BLE001 - the provider may have taken some of them
        log.exception("provider %s crashed on a batch of %d", provider_name, len(messages))
        return [Outcome.failed(m.delivery_id, AMBIGUOUS, repr(exc)) for m in messages]
