"""Fault injection with real worker processes: kill -9 mid-call, a message that kills its
worker, a Redis flush, a Redis outage during POSTs, a long retry across a restart, and
overlapping release/sweep runs. Nothing accepted is lost; nothing is sent twice unflagged.

Sizes are small enough for the default suite; CLARION_FAULT_DELIVERIES / CLARION_FAULT_KILLS
/ CLARION_FAULT_OUTAGE_SECONDS / CLARION_FAULT_POSTS run the issue's full sizes.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import requests
from django.db import connection
from django.db.models import Count
from rest_framework_api_key.models import APIKey

from config.celery import app as celery_app
from notifications import broadcasts, clock, recovery, services
from notifications.models import Delivery, FeedItem, Notification, Recipient
from tests.factories import add_template, notification_type_with_templates
from tests.support.http import RecordingServer
from tests.support.smtp import SmtpInbox, SmtpServer

DELIVERIES = int(os.environ.get("CLARION_FAULT_DELIVERIES", 300))
KILLS = int(os.environ.get("CLARION_FAULT_KILLS", 5))
OUTAGE_SECONDS = float(os.environ.get("CLARION_FAULT_OUTAGE_SECONDS", 3))
POSTS = int(os.environ.get("CLARION_FAULT_POSTS", 40))
CONCURRENCY = 2

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


class GatedInbox(SmtpInbox):
    """Keeps each message, then holds its reply while the gate is shut (a provider mid-call).

    The message counts as received before the reply: exactly the case where the sender
    cannot know whether it went, if it dies waiting.
    """

    def __init__(self, hold_rcpt: str = "") -> None:
        super().__init__()
        self.gate = threading.Event()
        self.gate.set()
        self.held = 0
        self.hold_rcpt = hold_rcpt
        self.rcpt_hits = 0

    async def _wait_gate(self) -> None:
        self.held += 1
        while not self.gate.is_set():
            await asyncio.sleep(0.01)
        self.held -= 1

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if address == self.hold_rcpt:
            self.rcpt_hits += 1
            self.gate.clear()
            await self._wait_gate()
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        reply = await super().handle_DATA(server, session, envelope)
        if not self.gate.is_set():
            await self._wait_gate()
        return reply

    def received(self) -> Counter:
        with self.lock:
            return Counter(str(m["To"]) for m in self.messages)


@pytest.fixture
def gated_smtp(settings):
    inbox = GatedInbox()
    with SmtpServer(inbox) as server:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST = "127.0.0.1"
        settings.EMAIL_PORT = server.port
        yield server


@pytest.fixture
def sweeping(settings):
    """The test process runs the sweeper, counting anything stuck as stuck at once."""
    settings.SWEEP_STUCK_AFTER_SECONDS = 0
    settings.MAX_ATTEMPTS = {**settings.MAX_ATTEMPTS, "email": 3}


@pytest.fixture
def private_broker(redis_server):
    """Workers and this process publish to a private redis-server the test may stop or flush."""
    previous = celery_app.conf.broker_url
    _switch_broker(redis_server.url)
    yield redis_server
    _switch_broker(previous)


def _switch_broker(url: str) -> None:
    # New pools for the new URL; the old ones stay open for whoever shares them.
    celery_app.conf.broker_url = url
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


def people(count: int, prefix: str = "p") -> list[str]:
    rows = [
        Recipient(external_id=f"{prefix}{i}", email=f"{prefix}{i}@example.com")
        for i in range(count)
    ]
    Recipient.objects.bulk_create(rows)
    return [r.external_id for r in rows]


def accept(ntype, recipients: list[str], data: dict | None = None, send_at=None):
    event = services.EventRequest(
        type_key=ntype.key, recipients=recipients, data=data or {"order_id": "X"}, send_at=send_at
    )
    return services.notification_accept(api_key_id="faults", event=event).notification


def status_counts() -> dict[str, int]:
    rows = Delivery.objects.values("status").annotate(n=Count("id")).order_by("status")
    return {row["status"]: row["n"] for row in rows}


def settle(inbox: SmtpInbox | None = None, quiet: float = 1.0, timeout: float = 120) -> None:
    """Until nothing pending is left to pick up and nothing has moved for ``quiet`` seconds."""
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        state = (
            status_counts(),
            Notification.objects.filter(status="accepted").count(),
            len(inbox.messages) if inbox else 0,
        )
        if state != last:
            last, since = state, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.1)
    raise AssertionError(f"the pipeline never settled: {last}")


def sweep_until_done(inbox: SmtpInbox, rounds: int = 5) -> None:
    for _ in range(rounds):
        settle(inbox)
        counts = status_counts()
        if not counts.get("sending") and not counts.get("pending"):
            if not Notification.objects.filter(status="accepted").exists():
                return
        recovery.sweep_stuck()
    settle(inbox)


def wait_for(condition, timeout: float = 60, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def email_type():
    return notification_type_with_templates(key="receipt", channels=("email",))


def worker_env(**extra: str) -> dict[str, str]:
    return {"SEND_BATCH_SIZE": "20", "EMAIL_MAX_ATTEMPTS": "3", **extra}


def test_kill_9_mid_call_loses_nothing_and_flags_every_duplicate(
    live_workers, gated_smtp, sweeping
):
    inbox: GatedInbox = gated_smtp.inbox
    recipients = people(DELIVERIES)
    worker = live_workers(concurrency=CONCURRENCY, env=worker_env())
    accept(email_type(), recipients)

    for kill in range(KILLS):
        wait_for(lambda k=kill: len(inbox.messages) >= (k + 1) * DELIVERIES // (KILLS + 2))
        inbox.gate.clear()
        wait_for(lambda: inbox.held >= 1, what="a message held mid-call")
        worker.kill()
        inbox.gate.set()
        # Beat's sweep, with no worker alive: whatever is in sending was stranded by the kill.
        recovery.sweep_stuck()
        worker = live_workers(concurrency=CONCURRENCY, env=worker_env())

    sweep_until_done(inbox)

    received = inbox.received()
    expected = {f"{r}@example.com" for r in recipients}
    assert set(received) == expected, f"lost: {len(expected - set(received))}"
    assert status_counts() == {"sent": DELIVERIES}
    duplicates = {address for address, n in received.items() if n > 1}
    flagged = set(
        Delivery.objects.filter(possible_duplicate=True).values_list("recipient__email", flat=True)
    )
    assert duplicates <= flagged
    assert len(flagged) <= KILLS * CONCURRENCY
    print(
        f"\n{DELIVERIES} deliveries, {KILLS} kills: {sum(received.values())} messages received, "
        f"{len(duplicates)} duplicates, {len(flagged)} flagged"
    )


def test_a_message_that_kills_its_worker_every_time_fails_and_the_rest_are_sent(
    live_workers, gated_smtp, sweeping
):
    inbox: GatedInbox = gated_smtp.inbox
    inbox.hold_rcpt = "p7@example.com"
    recipients = people(20)
    worker = live_workers(concurrency=1, env=worker_env())
    accept(email_type(), recipients)
    wait_for(lambda: Delivery.objects.filter(recipient__external_id="p7").exists())
    poison = Delivery.objects.get(recipient__external_id="p7")

    for attempt in range(1, 4):
        wait_for(lambda a=attempt: inbox.rcpt_hits >= a, what=f"poison attempt {attempt}")
        worker.kill()
        inbox.gate.set()
        recovery.sweep_stuck()
        worker = live_workers(concurrency=1, env=worker_env())

    sweep_until_done(inbox)

    poison.refresh_from_db()
    assert (poison.status, poison.attempts, poison.error_kind) == ("failed", 3, "ambiguous")
    received = inbox.received()
    assert set(received) == {f"{r}@example.com" for r in recipients if r != "p7"}
    assert set(received.values()) == {1}  # the others went once, batch-mates included
    assert status_counts() == {"failed": 1, "sent": 19}


def test_kill_9_mid_fan_out_writes_every_delivery_once_after_the_sweep(live_workers, sweeping):
    recipients = people(3000)
    notification_type_with_templates(key="news", channels=("in_app",), traffic="marketing")
    fan_out_env = {"BROADCAST_CHUNK_SIZE": "150", "BROADCAST_BATCH_SIZE": "75"}
    worker = live_workers(concurrency=1, env=fan_out_env)
    broadcast = broadcasts.broadcast_accept(
        api_key_id="faults", type_key="news", audience={"all": True}, data={"order_id": "X"}
    ).notification

    wait_for(
        lambda: Notification.objects.filter(id=broadcast.id, fanout_cursor__isnull=False).exists(),
        what="the first chunk",
    )
    worker.kill()
    broadcast.refresh_from_db()
    assert broadcast.status == "accepted", "the fan-out ended before the kill: nothing tested"
    written = Delivery.objects.count()
    live_workers(concurrency=1, env=fan_out_env)
    sweep_until_done(None)

    broadcast.refresh_from_db()
    assert broadcast.status == "routed"
    assert written < len(recipients) == Delivery.objects.filter(status="sent").count()
    assert Delivery.objects.values("recipient").distinct().count() == len(recipients)
    assert FeedItem.objects.count() == len(recipients)
    print(f"\nkilled with {written} of {len(recipients)} deliveries written")


def test_a_redis_flush_mid_run_loses_nothing_and_sends_nothing_twice(
    private_broker, live_workers, gated_smtp, sweeping
):
    inbox: GatedInbox = gated_smtp.inbox
    recipients = people(120)
    live_workers(concurrency=CONCURRENCY, env=worker_env(SEND_BATCH_SIZE="5"))
    ntype = email_type()
    for chunk in range(0, 120, 10):
        accept(ntype, recipients[chunk : chunk + 10])

    wait_for(lambda: len(inbox.messages) >= 20)
    private_broker.flush()
    settle(inbox)
    assert len(inbox.messages) < 120, "the flush came too late to lose anything"

    sweep_until_done(inbox)

    received = inbox.received()
    assert set(received) == {f"{r}@example.com" for r in recipients}
    assert set(received.values()) == {1}
    assert not Delivery.objects.filter(possible_duplicate=True).exists()


def test_posts_answer_at_once_while_redis_is_down_and_are_delivered_once_after(
    private_broker, live_server, live_workers, gated_smtp, sweeping
):
    inbox: GatedInbox = gated_smtp.inbox
    email_type()
    _, key = APIKey.objects.create_key(name="faults")
    http = requests.Session()
    http.headers["Authorization"] = f"Api-Key {key}"
    live_workers(concurrency=CONCURRENCY, env=worker_env())

    def post(i: int) -> float:
        started = time.monotonic()
        body = {
            "type": "receipt",
            "recipients": [{"external_id": f"o{i}", "email": f"o{i}@example.com"}],
            "data": {"order_id": str(i)},
        }
        response = http.post(f"{live_server.url}/api/v1/notifications/", json=body, timeout=10)
        assert response.status_code == 202, response.text
        return time.monotonic() - started

    during = max(1, POSTS // 2)
    private_broker.stop()
    outage_started = time.monotonic()
    with ThreadPoolExecutor(max_workers=4) as pool:
        times = list(pool.map(post, range(during)))
    time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - outage_started)))
    private_broker.start()
    times += [post(i) for i in range(during, POSTS)]

    assert max(times) < 1.0, f"slowest POST took {max(times):.2f} s"
    sweep_until_done(inbox, rounds=8)
    received = inbox.received()
    assert set(received) == {f"o{i}@example.com" for i in range(POSTS)}
    assert set(received.values()) == {1}
    print(f"\n{POSTS} POSTs, Redis down {OUTAGE_SECONDS:.0f} s: slowest {max(times) * 1000:.0f} ms")


def test_a_retry_ten_minutes_out_waits_in_postgres_and_survives_a_restart(live_workers):
    calls: list[float] = []

    def respond(request):
        calls.append(time.monotonic())
        if len(calls) == 1:
            return 429, {"Retry-After": "600"}, b"slow down"
        return 204, {}, b""

    with RecordingServer(respond) as receiver:
        ntype = notification_type_with_templates(key="hook", channels=("webhook",))
        add_template(ntype, "webhook", {}, locale="fr")
        Recipient.objects.create(external_id="w", webhook_url=f"{receiver.url}/in")
        worker = live_workers(concurrency=1)
        accept(ntype, ["w"])
        wait_for(lambda: Delivery.objects.filter(status="deferred").exists(), what="the park")
        delivery = Delivery.objects.get()
        assert 590 <= (delivery.next_attempt_at - clock.now()).total_seconds() <= 600
        with celery_app.connection_for_write() as conn:
            queued = sum(
                conn.default_channel.client.llen(q) for q in ("send.transactional.webhook",)
            )
        assert queued == 0  # nothing waits in the broker

        worker.stop()
        worker = live_workers(concurrency=1)
        assert recovery.release_due() == 0  # not due yet
        clock.advance(601)
        assert recovery.release_due() == 1
        wait_for(lambda: Delivery.objects.get().status == "sent", what="the send")
        time.sleep(0.5)
        assert len(calls) == 2
        delivery.refresh_from_db()
        assert delivery.attempts == 2


def test_overlapping_release_and_sweep_runs_send_each_deferred_delivery_once(
    live_workers, gated_smtp, settings
):
    inbox: GatedInbox = gated_smtp.inbox
    settings.SWEEP_STUCK_AFTER_SECONDS = 0
    recipients = people(60)
    live_workers(concurrency=CONCURRENCY, env=worker_env(SEND_BATCH_SIZE="5"))
    live_workers(concurrency=CONCURRENCY, env=worker_env(SEND_BATCH_SIZE="5"))
    accept(email_type(), recipients, send_at=clock.now() + timedelta(hours=1))
    wait_for(lambda: status_counts() == {"deferred": 60}, what="60 scheduled deliveries")
    clock.advance(3601)

    def run(job):
        try:
            return job()
        finally:
            connection.close()

    jobs = [recovery.release_due, recovery.release_due, recovery.sweep_stuck, recovery.sweep_stuck]
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(run, jobs))
    settle(inbox)

    received = inbox.received()
    assert set(received) == {f"{r}@example.com" for r in recipients}
    assert set(received.values()) == {1}
    assert status_counts() == {"sent": 60}
