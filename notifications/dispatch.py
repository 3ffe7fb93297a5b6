"""Hand a batch of messages to one provider; a crash becomes outcomes, never an exception."""

from __future__ import annotations

import logging

from channels.base import AMBIGUOUS, TRANSIENT, Message, Outcome, send_stream
from channels.registry import get_provider

from .journal import SendJournal

log = logging.getLogger(__name__)


def dispatch(
    provider_name: str, messages: list[Message], journal: SendJournal | None = None
) -> list[Outcome]:
    journal = journal or SendJournal()
    outcomes: list[Outcome] = []
    provider = get_provider(provider_name)
    try:
        outcomes.extend(journal.track(messages, send_stream(provider, messages)))
    except Exception as exc:  # noqa: BLE001 - the provider may have taken some of them
        log.exception("provider %s crashed on a batch of %d", provider_name, len(messages))
        rest = messages[len(outcomes) :]
        # A streaming provider was handing over the first of the rest; the others never
        # left. Of a whole-batch provider, any may have been taken.
        in_doubt = rest[:1] if hasattr(provider, "send_each") else rest
        outcomes.extend(Outcome.failed(m.delivery_id, AMBIGUOUS, repr(exc)) for m in in_doubt)
        outcomes.extend(
            Outcome.failed(m.delivery_id, TRANSIENT, f"not sent: {exc!r}")
            for m in rest[len(in_doubt) :]
        )
    return outcomes
