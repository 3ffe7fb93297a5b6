"""A failing ESP behind a breaker, with a backup account, through real worker processes."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter

import pytest

from notifications import clock, services
from notifications.models import Delivery, Recipient
from tests.factories import notification_type_with_templates
from tests.support.http import RecordingServer, ok_json

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

POSTMARK = "anymail.backends.postmark.EmailBackend"


class FakePostmark(RecordingServer):
    """Answers as Postmark's send API does; 500s while ``down``."""

    def __init__(self) -> None:
        super().__init__(self.answer)
        self.down = False

    def answer(self, request):
        if self.down:
            return 500, {"Content-Type": "application/json"}, b'{"ErrorCode": 500}'
        sent = request.json()
        answer = {"To": sent["To"], "MessageID": str(uuid.uuid4()), "ErrorCode": 0}
        return ok_json({**answer, "Message": "OK"})


def provider(url: str) -> dict:
    return {
        "channel": "email",
        "backend": "channels.email.EmailProvider",
        "options": {
            "backend": POSTMARK,
            "connection_options": {"server_token": "pm", "api_url": url},
        },
        "breaker": {"min_calls": 5, "failure_ratio": 0.5, "open_seconds": 600},
    }


def settle(quiet: float = 1.0, timeout: float = 60) -> None:
    deadline, last, since = time.monotonic() + timeout, None, time.monotonic()
    while time.monotonic() < deadline:
        state = list(Delivery.objects.values_list("status", "provider").order_by("id"))
        busy = any(s in ("pending", "sending", "deferred") for s, _ in state)
        if state != last:
            last, since = state, time.monotonic()
        elif not busy and time.monotonic() - since >= quiet:
            return
        time.sleep(0.1)
    raise AssertionError("deliveries never settled")


def wave(ntype, prefix: str, size: int) -> list[str]:
    Recipient.objects.bulk_create(
        Recipient(external_id=f"{prefix}{i}", email=f"{prefix}{i}@example.com") for i in range(size)
    )
    ids = [f"{prefix}{i}" for i in range(size)]
    event = services.EventRequest(type_key=ntype.key, recipients=ids, data={"order_id": prefix})
    services.notification_accept(api_key_id="breaker", event=event)
    return [f"{i}@example.com" for i in ids]


def test_the_breaker_opens_falls_back_probes_once_and_closes(live_workers):
    with FakePostmark() as primary, FakePostmark() as backup:
        ntype = notification_type_with_templates(key="receipt", channels=("email",))
        worker = live_workers(
            concurrency=1,
            env={
                "PROVIDERS_JSON": json.dumps(
                    {"email": provider(primary.url), "email-backup": provider(backup.url)}
                ),
                "CHANNEL_PROVIDERS_JSON": json.dumps({"email": ["email", "email-backup"]}),
                "SEND_BATCH_SIZE": "5",
                "RETRY_BACKOFF_BASE_SECONDS": "0.1",
            },
        )

        primary.down = True
        first = wave(ntype, "a", 30)
        settle()
        calls_while_down = len(primary.requests)

        primary.down = False
        clock.advance(601)  # the breaker's open period is over: half-open
        second = wave(ntype, "b", 30)
        settle()

    log = "".join(worker.output)
    said = [log.find(f"breaker email {word}") for word in ("opened", "half-open", "closed")]
    assert -1 not in said and said == sorted(said), said
    # Open after the first failing batch; nothing reached the primary until the probe.
    assert calls_while_down == 5
    probe = primary.requests[calls_while_down]
    assert probe.json()["To"] == second[0]

    sent = Counter(Delivery.objects.filter(status="sent").values_list("provider", flat=True))
    assert sent["email"] + sent["email-backup"] == 60
    received = Counter(r.json()["To"] for r in primary.requests[calls_while_down:])
    received.update(r.json()["To"] for r in backup.requests)
    assert set(received) == set(first) | set(second)
    assert set(received.values()) == {1}  # 0 duplicates
    assert sent["email"] == 30 - 4  # after the probe closed it, the primary took the rest
