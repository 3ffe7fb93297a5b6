"""Without REDIS_URL the cache is a database table: ``migrate`` alone must create it."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fresh_database():
    """An empty PostgreSQL database beside the test one, dropped afterwards."""
    params = connection.settings_dict
    name = f"clarion_cache_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect(
        host=params["HOST"],
        port=params["PORT"],
        user=params["USER"],
        dbname="postgres",
        password=params["PASSWORD"] or None,
        autocommit=True,
    )
    admin.execute(f'CREATE DATABASE "{name}"')
    user = quote(params["USER"], safe="")
    if params["PASSWORD"]:
        user += ":" + quote(params["PASSWORD"], safe="")
    try:
        yield f"postgres://{user}@{params['HOST']}:{params['PORT']}/{name}"
    finally:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.close()


def manage(database_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": database_url,
        "SECRET_KEY": "s3",
        # A broker that is not Redis, and no REDIS_URL: the cache is the database's.
        "CELERY_BROKER_URL": "amqp://guest@127.0.0.1:5672//",
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )


def python(database_url: str, code: str) -> str:
    """What ``code`` prints, run by ``manage.py shell`` in a new process."""
    done = manage(database_url, "shell", "-v0", "-c", code)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_migrate_alone_creates_the_database_cache_table(fresh_database):
    migrated = manage(fresh_database, "migrate", "--noinput", "-v0")
    assert migrated.returncode == 0, migrated.stderr

    used = python(
        fresh_database,
        "from django.core.cache import caches; cache = caches['default']; "
        "print(type(cache).__name__, cache.add('ring', 1, 30), cache.add('ring', 1, 30))",
    )
    assert used.split() == ["DatabaseCache", "True", "False"]


def test_migrating_again_keeps_what_the_cache_holds(fresh_database):
    assert manage(fresh_database, "migrate", "--noinput", "-v0").returncode == 0
    python(fresh_database, "from django.core.cache import cache; cache.set('kept', 'yes', 300)")

    again = manage(fresh_database, "migrate", "--noinput", "-v0")
    assert again.returncode == 0, again.stderr

    got = python(fresh_database, "from django.core.cache import cache; print(cache.get('kept'))")
    assert got.strip() == "yes"
