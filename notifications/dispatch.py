"""Hand a batch of messages to one provider, through its breaker and send rate.

A crash becomes outcomes, never an exception; every outcome is noted in the send journal
as it comes (notifications/journal.py).
"""

from __future__ import annotations

import logging

from channels import breaker, ratelimit
from channels.base import AMBIGUOUS, PERMANENT, TRANSIENT, Message, Outcome, send_stream
from channels.registry import get_provider

from .journal import SendJournal

log = logging.getLogger(__name__)

# Prefixes notifications/outcomes.py acts on: an open circuit falls back at once; a rate
# limit is waited out without spending an attempt.
CIRCUIT_OPEN = "circuit open"
RATE_LIMITED = "rate limited"


def dispatch(
    provider_name: str, messages: list[Message], journal: SendJournal | None = None
) -> list[Outcome]:
    journal = journal or SendJournal()
    admission = breaker.admit(provider_name)
    if admission is breaker.Admission.NONE:
        return [_circuit_open(provider_name, m) for m in messages]
    # Half-open: one message is the probe; the rest of the batch goes elsewhere.
    allowed = messages[:1] if admission is breaker.Admission.PROBE else messages
    refused = messages[len(allowed) :]
    grant = ratelimit.acquire(provider_name, len(allowed))
    now, later = allowed[: grant.granted], allowed[grant.granted :]
    outcomes = _send(provider_name, now, journal)
    failed = sum(1 for o in outcomes if o.error_kind in (TRANSIENT, AMBIGUOUS))
    breaker.record(provider_name, admission, ok=len(outcomes) - failed, failed=failed)
    outcomes += [_circuit_open(provider_name, m) for m in refused]
    outcomes += [
        Outcome.failed(
            m.delivery_id,
            TRANSIENT,
            f"{RATE_LIMITED}: {provider_name} is at its send rate",
            retry_after=grant.wait_seconds,
        )
        for m in later
    ]
    return outcomes


def _circuit_open(provider_name: str, message: Message) -> Outcome:
    # Where no backup takes it, it waits for the breaker's next probe (notifications/outcomes.py).
    return Outcome.failed(
        message.delivery_id,
        TRANSIENT,
        f"{CIRCUIT_OPEN}: {provider_name}",
        retry_after=breaker.limits(provider_name).open_seconds,
    )


def _send(provider_name: str, messages: list[Message], journal: SendJournal) -> list[Outcome]:
    if not messages:
        return []
    outcomes: list[Outcome] = []
    try:
        provider = get_provider(provider_name)
    except Exception as exc:  # noqa: BLE001 - a provider retired from PROVIDERS, a bad backend
        log.exception("provider %s cannot be loaded", provider_name)
        # Nothing was sent: each message goes to its next hop (or fails, with none).
        return [
            Outcome.failed(m.delivery_id, PERMANENT, f"provider {provider_name}: {exc!r}")
            for m in messages
        ]
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
