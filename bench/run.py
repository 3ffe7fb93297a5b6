"""`make bench`: Clarion beside its peers, in one run, on the same data and machine.

Every email path hands complete MIME bytes to bench.null_email (a counting sink), so what is
compared is the work each design does around a send. Figures go to a printed table and to
bench/results/latest.json; `--quick` runs small sizes and `--check` fails (exit 1) when a
ratio falls below its threshold in bench/thresholds.json. Absolute figures are reported,
never gated: these machines are noisy, ratios measured side by side are not.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

import django  # noqa: E402

django.setup()

import requests  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.mail import send_mail  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.db.models import Min  # noqa: E402
from django.template import engines  # noqa: E402
from rest_framework_api_key.models import APIKey  # noqa: E402

from bench import null_email  # noqa: E402
from bench.templates import DATA, HTML, SUBJECT, TEXT  # noqa: E402
from notifications import doorbell  # noqa: E402
from notifications.models import (  # noqa: E402
    Category,
    Delivery,
    Notification,
    NotificationType,
    Recipient,
)
from preferences.addresses import address_hash  # noqa: E402
from preferences.models import Preference, Suppression  # noqa: E402
from templates_app.models import Template  # noqa: E402
from templates_app.services import template_version_save  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.worker import WorkerProcess  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "latest.json"
THRESHOLDS = ROOT / "bench" / "thresholds.json"
SIZES = {
    "full": {"recipients": 100_000, "per_task_peer": 20_000, "api": 4_000, "latency_s": 20},
    "quick": {"recipients": 1_500, "per_task_peer": 500, "api": 200, "latency_s": 2},
}
OPTED_OUT_EVERY, SUPPRESSED_EVERY = 50, 100  # 2% opted out, 1% suppressed
CLIENTS = 8
MARKETING_NICE = 10


# --- setup ---------------------------------------------------------------------------------


def ensure_database() -> None:
    import psycopg

    db = settings.DATABASES["default"]
    with psycopg.connect(
        host=db["HOST"],
        port=db["PORT"] or 5432,
        user=db["USER"],
        dbname="postgres",
        autocommit=True,
    ) as admin:
        if not admin.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [db["NAME"]]
        ).fetchone():
            admin.execute(f'CREATE DATABASE "{db["NAME"]}"')


def reset_data() -> None:
    ensure_database()
    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE notifications_delivery, notifications_feeditem, notifications_notification,"
            " notifications_recipient, preferences_preference, preferences_suppression,"
            " preferences_consentlog, post_office_email, post_office_log,"
            " post_office_emailtemplate, bench_bareevent CASCADE"
        )
    null_email.client(settings.REDIS_URL).delete(null_email.SENT, null_email.SENT_AT)


def catalog() -> tuple[NotificationType, NotificationType]:
    category, _ = Category.objects.get_or_create(key="bench", defaults={"name": "Bench"})
    types = []
    for key, traffic in (("bench-deals", "marketing"), ("bench-receipt", "transactional")):
        ntype, _ = NotificationType.objects.update_or_create(
            key=key,
            defaults={"name": key, "category": category, "traffic": traffic, "channels": ["email"]},
        )
        template, _ = Template.objects.get_or_create(
            notification_type=ntype, channel="email", locale="en"
        )
        template_version_save(template, {"subject": SUBJECT, "html": HTML, "text": TEXT})
        types.append(ntype)
    return types[0], types[1]


def recipients(count: int) -> list[tuple[int, str]]:
    """Recipients written with COPY; 2% opted out of marketing, 1% suppressed."""
    with connection.cursor() as cursor:
        with cursor.cursor.copy(
            "COPY notifications_recipient (external_id, email, phone, webhook_url, locale,"
            " timezone, attributes, tags, created_at, updated_at)"
            " FROM STDIN"
        ) as copy:
            for i in range(count):
                copy.write_row(
                    [f"r{i}", f"r{i}@example.com", "", "", "en", "UTC", "{}", "[]", "now", "now"]
                )
    people = list(Recipient.objects.order_by("id").values_list("id", "email"))
    Preference.objects.bulk_create(
        Preference(recipient_id=rid, enabled=False) for rid, _ in people[::OPTED_OUT_EVERY]
    )
    Suppression.objects.bulk_create(
        Suppression(channel="email", address_hash=address_hash("email", email), reason="manual")
        for _, email in people[1::SUPPRESSED_EVERY]
    )
    return people


def sent() -> int:
    return int(null_email.client(settings.REDIS_URL).get(null_email.SENT) or 0)


def wait_sent(target: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while sent() < target:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {sent()} of {target} emails arrived")
        time.sleep(0.02)
    return time.monotonic()


def rss_mb(worker: WorkerProcess) -> float:
    """The worker's resident memory: its main process and pool children."""
    pids = [worker.pid]
    children = Path(f"/proc/{worker.pid}/task/{worker.pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return round(total / 1024, 1)


def worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="bench.settings",
        DATABASE_URL=os.environ["DATABASE_URL"],
        REDIS_URL=settings.REDIS_URL,
        CELERY_BROKER_URL=settings.CELERY_BROKER_URL,
        DB_CONN_MAX_AGE="600",
    )
    return env


@contextmanager
def workers():
    """Clarion's processes as deployed: marketing and transactional workers apart."""
    from config.celery import queues_for

    # Marketing yields the CPU to transactional work, as Procfile and Dockerfile run it.
    marketing = WorkerProcess(
        worker_env(), queues_for("marketing"), concurrency=2, name="mkt", nice=MARKETING_NICE
    )
    transactional = WorkerProcess(
        worker_env(), queues_for("transactional"), concurrency=2, name="tx"
    )
    marketing.start(timeout=60)
    transactional.start(timeout=60)
    try:
        yield marketing, transactional
    finally:
        marketing.stop()
        transactional.stop()


@contextmanager
def gunicorn():
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(2 * (os.cpu_count() or 1)),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=worker_env(),
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/healthz", timeout=5).ok:
                break
        except requests.RequestException:
            time.sleep(0.1)
    try:
        yield url
    finally:
        process.terminate()
        process.wait(20)


# --- the measurements ------------------------------------------------------------------------


def naive_loop(people: list[tuple[int, str]]) -> float:
    """The in-process limit: render and send_mail in a loop, no database, no queue."""
    engine = engines["django"]
    subject, html, text = (engine.from_string(t) for t in (SUBJECT, HTML, TEXT))
    start = time.monotonic()
    for rid, email in people:
        context = {"data": DATA, "recipient": {"external_id": f"r{rid}"}}
        send_mail(
            subject.render(context),
            text.render(context),
            None,
            [email],
            html_message=html.render(context),
        )
    return len(people) / (time.monotonic() - start)


def post_office_peer(people: list[tuple[int, str]]) -> float:
    """django-post-office: queue every mail with a template (send_many), then send_queued."""
    from post_office import mail
    from post_office.models import EmailTemplate

    template = EmailTemplate.objects.create(
        name="bench", subject=SUBJECT, content=TEXT, html_content=HTML
    )
    before = sent()
    start = time.monotonic()
    mail.send_many(
        [
            {
                "recipients": [email],
                "sender": settings.DEFAULT_FROM_EMAIL,
                "template": template,
                "context": {"data": DATA, "recipient": {"external_id": f"r{rid}"}},
                "priority": "medium",
            }
            for rid, email in people
        ]
    )
    mail.send_queued_mail_until_done(processes=2)
    wait_sent(before + len(people), timeout=3600)
    return len(people) / (time.monotonic() - start)


def per_task_peer(people: list[tuple[int, str]]) -> float:
    """One Celery task per recipient calling send_mail, on the same worker processes."""
    from bench.tasks import send_one

    peer = WorkerProcess(worker_env(), ["bench.peer"], concurrency=2, name="peer").start(60)
    before = sent()
    start = time.monotonic()
    try:
        for rid, _ in people:
            send_one.apply_async(args=[rid, DATA], queue="bench.peer")
        wait_sent(before + len(people), timeout=3600)
    finally:
        peer.stop()
    return len(people) / (time.monotonic() - start)


def campaign(url: str, key: str, eligible: int, marketing: WorkerProcess) -> dict:
    """A broadcast to everyone through the real pipeline, from the API call to the last send.

    The database limit is measured beside the fan-out, not minutes later on a machine that
    may have slowed down since: the marketing worker takes no sends until the fan-out is written
    and its sends are published, the COPY runs then on an otherwise idle machine, and that
    pause, until the worker claims its first send batch, is left out of the campaign's time.
    """
    from config.celery import app, send_queue

    before = sent()
    peak = rss_start = rss_mb(marketing)
    held = send_queue("marketing", "email")
    only = [marketing.nodename]
    if not app.control.cancel_consumer(held, destination=only, reply=True, timeout=10):
        raise RuntimeError(f"no worker answered to stop taking {held}")
    start = time.monotonic()
    answer = requests.post(
        f"{url}/api/v1/broadcasts/",
        json={"type": "bench-deals", "audience": {"all": True}, "data": DATA},
        headers={"Authorization": f"Api-Key {key}"},
        timeout=30,
    )
    answer.raise_for_status()
    deliveries = Delivery.objects.filter(notification_id=answer.json()["id"])
    # The last fan-out chunk marks the broadcast routed, in the commit of its rows.
    unrouted = Notification.objects.filter(id=answer.json()["id"], status="accepted")
    while unrouted.exists():
        time.sleep(0.01)
    fanout_seconds = time.monotonic() - start
    to_send = deliveries.exclude(status=Delivery.Status.SKIPPED).count()
    if to_send != eligible:
        raise RuntimeError(f"the broadcast sends {to_send} emails, the bench counts {eligible}")
    wait_idle(marketing)
    paused = time.time()  # wall clock, as the workers' claimed_at
    copy_rows_per_s = copy_limit(answer.json()["id"])
    if not app.control.add_consumer(held, destination=only, reply=True, timeout=10):
        raise RuntimeError(f"no worker answered to take {held} again")
    while sent() < before + eligible:
        peak = max(peak, rss_mb(marketing))
        time.sleep(0.2)
    # The pause lasts until the first send batch is claimed: a worker takes a queue back on
    # its next poll of the broker, up to a second later, a wait only this bench makes.
    resumed = deliveries.aggregate(first=Min("claimed_at"))["first"].timestamp()
    elapsed = time.monotonic() - start - (resumed - paused)
    rows = deliveries.count()
    return {
        "id": answer.json()["id"],
        "emails_per_s": eligible / elapsed,
        "fanout_rows_per_s": rows / fanout_seconds,
        "copy_rows_per_s": copy_rows_per_s,
        "rows": rows,
        "rss_start": rss_start,
        "rss_peak": peak,
    }


def wait_idle(worker: WorkerProcess, timeout: float = 120) -> None:
    """Until the worker runs no task (its routing task has published every send)."""
    from config.celery import app

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        active = app.control.inspect([worker.nodename], timeout=10).active()
        if active and not any(active.values()):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{worker.nodename} is still busy")


def copy_limit(notification_id: str) -> float:
    """The database limit: the same Delivery rows, written by one COPY into a twin table.

    The twin is what any writer of these rows must maintain: a table like Delivery's, logged
    (its rows are durable, as a fan-out's are), with the same defaults, constraints, indexes
    and deferred foreign keys, timed to its commit (where the foreign keys are checked).
    """
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE delivery_twin (LIKE notifications_delivery INCLUDING ALL)")
        cursor.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = 'notifications_delivery'::regclass AND contype = 'f'"
        )
        for (definition,) in cursor.fetchall():
            cursor.execute(f"ALTER TABLE delivery_twin ADD {definition}")
        data = bytearray()
        with cursor.cursor.copy(
            "COPY (SELECT * FROM notifications_delivery WHERE notification_id = %s) TO STDOUT",
            [notification_id],
        ) as out:
            for block in out:
                data += block
        rows = Delivery.objects.filter(notification_id=notification_id).count()
        start = time.monotonic()
        with transaction.atomic():
            with cursor.cursor.copy("COPY delivery_twin FROM STDIN") as copy:
                copy.write(bytes(data))
        elapsed = time.monotonic() - start
        cursor.execute("DROP TABLE delivery_twin")
    return rows / elapsed


class Client:
    """A lean HTTP client: one connection, JSON in and out.

    The load generator shares the two cores with what it measures, so its own CPU is kept
    low: ``requests`` spent ~2.5 ms of CPU per call here, http.client about a third of that.
    Gunicorn's sync workers close each connection; http.client opens the next on demand.
    """

    def __init__(self, url: str, key: str | None = None):
        parts = urlsplit(url)
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        self.headers = {"Content-Type": "application/json"}
        if key:
            self.headers["Authorization"] = f"Api-Key {key}"

    def post(self, path: str, body) -> dict:
        try:
            self.connection.request("POST", path, json.dumps(body), self.headers)
            response = self.connection.getresponse()
            text = response.read()
        except (OSError, http.client.HTTPException):
            self.connection.close()
            raise
        if response.status not in (200, 202):
            raise RuntimeError(f"{path}: {response.status} {text[:200]!r}")
        return json.loads(text)


def load(url: str, path: str, bodies: list, key: str | None) -> float:
    """Seconds CLIENTS concurrent clients, each with its own connection, take to post bodies."""
    clients = threading.local()

    def post(body):
        client = getattr(clients, "c", None) or Client(url, key)
        clients.c = client
        client.post(path, body)

    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        list(pool.map(post, bodies))
    return time.monotonic() - start


def side_by_side(url: str, loads: dict[str, tuple]) -> dict[str, float]:
    """Requests per second of each named ``(path, bodies, key)`` load, taken in turns.

    Each load is cut in up to four slices and the slices alternate, so a machine that slows
    down halfway (these are shared) slows every load alike and leaves their ratios alone. A
    slice keeps at least one request per client, or the clients would not all be busy.
    """
    fewest = min(len(bodies) for _, bodies, _ in loads.values())
    rounds = max(1, min(4, fewest // CLIENTS))
    elapsed = dict.fromkeys(loads, 0.0)
    for turn in range(rounds):
        for name, (path, bodies, key) in loads.items():
            elapsed[name] += load(url, path, bodies[turn::rounds], key)
    return {name: len(loads[name][1]) / elapsed[name] for name in loads}


def event(i: int, prefix: str) -> dict:
    return {
        "type": "bench-receipt",
        "recipients": [{"external_id": f"{prefix}{i}", "email": f"{prefix}{i}@example.com"}],
        "data": DATA,
    }


def latency(url: str, key: str, seconds: float, prefix: str, rate: int = 100) -> dict:
    """API accept -> provider call, for transactional events at a steady ``rate`` per second."""
    clients = threading.local()
    ids: list[str] = []
    lock = threading.Lock()

    def post(i: int) -> None:
        client = getattr(clients, "c", None) or Client(url, key)
        clients.c = client
        answer = client.post("/api/v1/notifications/", event(i, prefix))
        with lock:
            ids.append(answer["id"])

    count = int(seconds * rate)
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=16) as pool:
        for i in range(count):
            time.sleep(max(0.0, start + i / rate - time.monotonic()))
            pool.submit(post, i)
    deadline = time.monotonic() + 120
    redis = null_email.client(settings.REDIS_URL)
    while True:
        deliveries = dict(
            Delivery.objects.filter(notification_id__in=ids).values_list("id", "notification_id")
        )
        stamps = redis.hmget(null_email.SENT_AT, [str(d) for d in deliveries]) if deliveries else []
        if (len(deliveries) == len(ids) and all(stamps)) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    accepted = dict(Notification.objects.filter(id__in=ids).values_list("id", "created_at"))
    samples = sorted(
        (float(stamp) - accepted[nid].timestamp()) * 1000
        for (did, nid), stamp in zip(deliveries.items(), stamps, strict=True)
        if stamp
    )
    return {
        "p50": round(percentile(samples, 50), 1),
        "p95": round(percentile(samples, 95), 1),
        "p99": round(percentile(samples, 99), 1),
        "samples": len(samples),
        "expected": count,
    }


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    return (
        statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1]
        if len(values) > 1
        else values[0]
    )


# --- the run -----------------------------------------------------------------------------------


def run(size: dict) -> dict:
    reset_data()
    catalog()
    people = recipients(size["recipients"])
    eligible = sum(
        1
        for index, _ in enumerate(people)
        if index % OPTED_OUT_EVERY and (index - 1) % SUPPRESSED_EVERY
    )
    eligible_people = [
        p
        for index, p in enumerate(people)
        if index % OPTED_OUT_EVERY and (index - 1) % SUPPRESSED_EVERY
    ]
    _, key = APIKey.objects.create_key(name="bench")
    figures: dict = {}

    print("naive send_mail loop ...", flush=True)
    figures["naive_emails_per_s"] = naive_loop(eligible_people)
    print("django-post-office ...", flush=True)
    figures["post_office_emails_per_s"] = post_office_peer(eligible_people)
    print("one Celery task per recipient ...", flush=True)
    figures["celery_per_message_emails_per_s"] = per_task_peer(
        eligible_people[: size["per_task_peer"]]
    )

    with gunicorn() as url:
        print("API intake (workers stopped) ...", flush=True)
        n = size["api"]
        bulk = [
            {"notifications": [event(i * 100 + j, "b") for j in range(100)]} for i in range(n // 50)
        ]
        rates = side_by_side(
            url,
            {
                "bare": ("/bench/bare/", [{"i": i} for i in range(n)], None),
                "single": ("/api/v1/notifications/", [event(i, "a") for i in range(n)], key),
                "bulk": ("/api/v1/notifications/bulk/", bulk, key),
            },
        )
        figures["bare_view_per_s"] = rates["bare"]
        figures["api_single_per_s"] = rates["single"]
        figures["api_bulk_per_s"] = rates["bulk"] * 100
        # The intake's events and the recipients they brought inline go: left in, those
        # recipients joined the campaign's audience, whose last sends then ran through the
        # latency phase that follows.
        Notification.objects.filter(type__key="bench-receipt").delete()
        Recipient.objects.filter(external_id__regex=r"^[ab][0-9]+$").delete()
        from config.celery import app

        with app.connection_for_write() as conn:
            for queue in ("route.transactional", "send.transactional.email"):
                conn.default_channel.queue_purge(queue)
        doorbell.answer("transactional")  # its task was just purged with the queue

        with workers() as (marketing, _):
            print("campaign ...", flush=True)
            result = campaign(url, key, eligible, marketing)
            figures["campaign_emails_per_s"] = result["emails_per_s"]
            figures["fanout_rows_per_s"] = result["fanout_rows_per_s"]
            figures["worker_rss_start_mb"] = result["rss_start"]
            figures["worker_rss_peak_mb"] = result["rss_peak"]
            figures["worker_rss_end_mb"] = rss_mb(marketing)
            figures["copy_rows_per_s"] = result["copy_rows_per_s"]
            print("latency alone ...", flush=True)
            figures["latency_ms"] = latency(url, key, size["latency_s"], "l")
            print("latency during a campaign ...", flush=True)
            before = sent()
            requests.post(
                f"{url}/api/v1/broadcasts/",
                json={"type": "bench-deals", "audience": {"all": True}, "data": DATA},
                headers={"Authorization": f"Api-Key {key}"},
                timeout=30,
            ).raise_for_status()
            time.sleep(min(2.0, size["latency_s"]))
            figures["latency_during_campaign_ms"] = latency(url, key, size["latency_s"], "m")
            wait_sent(before + eligible + int(size["latency_s"] * 100), timeout=3600)
    return figures


def ratios(f: dict) -> dict:
    return {
        "campaign_vs_post_office": f["campaign_emails_per_s"] / f["post_office_emails_per_s"],
        "campaign_vs_celery_per_message": f["campaign_emails_per_s"]
        / f["celery_per_message_emails_per_s"],
        "campaign_vs_naive": f["campaign_emails_per_s"] / f["naive_emails_per_s"],
        "fanout_vs_copy": f["fanout_rows_per_s"] / f["copy_rows_per_s"],
        "api_single_vs_bare": f["api_single_per_s"] / f["bare_view_per_s"],
        "api_bulk_vs_single": f["api_bulk_per_s"] / f["api_single_per_s"],
        "latency_p99_during_vs_alone": f["latency_during_campaign_ms"]["p99"]
        / f["latency_ms"]["p99"],
        "worker_rss_growth": f["worker_rss_end_mb"] / f["worker_rss_start_mb"] - 1,
    }


def machine() -> dict:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "postgres": connection.cursor().connection.info.server_version,
    }


def commit() -> str:
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()


def check(found: dict, limits: dict | None = None) -> list[str]:
    """Ratios below their floor (or, for the *_max ones, above their ceiling).

    Written so a ratio that is not a number (a phase that measured nothing) is a miss too.
    """
    limits = limits or json.loads(THRESHOLDS.read_text())
    misses = []
    for name, floor in limits.get("min", {}).items():
        if not found[name] >= floor:
            misses.append(f"{name} = {found[name]:.2f}, below {floor}")
    for name, ceiling in limits.get("max", {}).items():
        if not found[name] <= ceiling:
            misses.append(f"{name} = {found[name]:.2f}, above {ceiling}")
    return misses


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    parser.add_argument("--check", action="store_true", help="fail on a ratio below threshold")
    args = parser.parse_args()
    mode = "quick" if args.quick else "full"
    figures = run(SIZES[mode])
    found = ratios(figures)
    result = {
        **{k: (round(v, 1) if isinstance(v, float) else v) for k, v in figures.items()},
        "ratios": {k: round(v, 3) for k, v in found.items()},
        "sizes": SIZES[mode],
        "mode": mode,
        "machine": machine(),
        "commit": commit(),
    }
    print()
    for name, value in result.items():
        if name not in ("machine", "sizes"):
            print(f"{name:36} {value}")
    if not args.quick:
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
        print(f"\nwritten to {RESULTS.relative_to(ROOT)}")
    if args.check:
        misses = check(found)
        for miss in misses:
            print(f"BELOW THRESHOLD: {miss}")
        return 1 if misses else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
