"""Shared fixtures: real PostgreSQL (pytest-django), Redis, Celery workers, SMTP, HTTP."""

from __future__ import annotations

import os

import pytest
from django.conf import settings
from django.core.cache import cache

from config.celery import app as celery_app
from tests.support.http import RecordingServer
from tests.support.redis_server import RedisServer
from tests.support.smtp import SmtpServer
from tests.support.worker import WorkerProcess


@pytest.fixture(autouse=True)
def _eager_celery_and_clean_cache(settings):
    """Unit tests run tasks inline; end-to-end tests switch to real workers (live_workers)."""
    celery_app.conf.task_always_eager = True
    celery_app.conf.task_eager_propagates = True
    settings.CLOCK_OFFSET_ENABLED = True
    settings.WEBHOOK_ALLOW_LOOPBACK = True
    cache.clear()
    from channels import registry

    registry.reset()
    yield
    registry.reset()
    cache.clear()


@pytest.fixture
def smtp_server(settings):
    """A real SMTP listener; Django's email goes to it through the SMTP backend."""
    with SmtpServer() as server:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST = "127.0.0.1"
        settings.EMAIL_PORT = server.port
        yield server


@pytest.fixture
def http_server():
    with RecordingServer() as server:
        yield server


@pytest.fixture
def browser(monkeypatch):
    """Headless Chromium (tests/support/browser.py)."""
    from tests.support.browser import chromium

    # Playwright's sync API keeps an event loop on this thread; the ORM calls between page
    # steps are still plain synchronous ones.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with chromium() as browser:
        yield browser


@pytest.fixture
def redis_server():
    """A private redis-server for tests that stop or flush it."""
    with RedisServer() as server:
        yield server


def worker_environment(**overrides: str) -> dict[str, str]:
    """The environment a worker process needs to share this test's database and broker."""
    from django.db import connection

    db = connection.settings_dict
    env = dict(os.environ)
    env.update(
        DATABASE_URL=f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
        f"/{db['NAME']}",
        REDIS_URL=settings.REDIS_URL,
        CELERY_BROKER_URL=celery_app.conf.broker_url,
        CLOCK_OFFSET_ENABLED="1",
        DB_CONN_MAX_AGE="60",
        WEBHOOK_ALLOW_LOOPBACK="1",
        EMAIL_BACKEND=settings.EMAIL_BACKEND,
        EMAIL_HOST=str(settings.EMAIL_HOST),
        EMAIL_PORT=str(settings.EMAIL_PORT),
    )
    env.update(overrides)
    return env


@pytest.fixture
def live_workers(transactional_db):
    """Publish to the real broker and start worker processes on demand (stopped after)."""
    celery_app.conf.task_always_eager = False
    with celery_app.connection_for_write() as conn:
        for queue in _all_queues():
            conn.default_channel.queue_purge(queue) if _queue_exists(conn, queue) else None
    started: list[WorkerProcess] = []

    def start(queues: list[str] | None = None, **kwargs) -> WorkerProcess:
        env = worker_environment(**kwargs.pop("env", {}))
        worker = WorkerProcess(env, queues or _all_queues(), **kwargs).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()
    celery_app.conf.task_always_eager = True


def _all_queues() -> list[str]:
    from config.celery import MAINTENANCE_QUEUE, queues_for

    return queues_for("transactional") + queues_for("marketing") + [MAINTENANCE_QUEUE]


def _queue_exists(conn, queue: str) -> bool:
    try:
        conn.default_channel.queue_declare(queue=queue, passive=True)
        return True
    except Exception:  # noqa: BLE001 - a missing queue has nothing to purge
        return False
