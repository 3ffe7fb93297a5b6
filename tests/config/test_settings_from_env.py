"""Settings read from the environment, each read in a fresh interpreter as a process would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = {"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/clarion", "SECRET_KEY": "s3"}


def settings_of(names: list[str], **env: str) -> subprocess.CompletedProcess:
    """The named settings as JSON, read by a new interpreter with exactly this environment."""
    code = (
        "import json, django; from django.conf import settings; django.setup(); "
        f"print(json.dumps({{n: getattr(settings, n) for n in {names!r}}}, default=str))"
    )
    clean = {"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "config.settings", **env}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=clean, capture_output=True, text=True
    )


def read(names: list[str], **env: str) -> dict:
    done = settings_of(names, **env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("secret", [None, ""])
def test_outside_trial_mode_the_secret_key_must_be_set(secret):
    env = {"DATABASE_URL": PRODUCTION["DATABASE_URL"]}
    if secret is not None:
        env["SECRET_KEY"] = secret
    done = settings_of(["SECRET_KEY"], **env)
    assert done.returncode != 0
    assert "Set SECRET_KEY" in done.stderr


def test_settings_that_cannot_be_empty_take_their_default_when_left_blank():
    found = read(
        ["CELERY_BROKER_URL", "EMAIL_BACKEND", "LOGGING"],
        **PRODUCTION,
        REDIS_URL="redis://127.0.0.1:6379/3",
        CELERY_BROKER_URL="",
        EMAIL_BACKEND="",
        LOG_LEVEL="",
    )
    assert found["CELERY_BROKER_URL"] == "redis://127.0.0.1:6379/3"
    assert found["EMAIL_BACKEND"] == "django.core.mail.backends.console.EmailBackend"
    assert found["LOGGING"]["root"]["level"] == "INFO"


def test_a_blank_value_is_kept_where_blank_means_something():
    # An upgrade must not turn an empty hash key into another one (it would orphan every
    # suppression) nor a blank postal address into the placeholder.
    found = read(
        ["SUPPRESSION_HASH_KEY", "SENDER_POSTAL_ADDRESS", "TWILIO_STATUS_CALLBACK_URL"],
        **PRODUCTION,
        PUBLIC_BASE_URL="https://notify.example.com",
        SUPPRESSION_HASH_KEY="",
        SENDER_POSTAL_ADDRESS="",
        TWILIO_STATUS_CALLBACK_URL="",
    )
    assert found == dict.fromkeys(found, "")


def test_an_empty_sms_reply_means_no_reply():
    assert read(["SMS_STOP_REPLY"], **PRODUCTION, SMS_STOP_REPLY="") == {"SMS_STOP_REPLY": ""}


def test_the_log_level_is_taken_in_any_case():
    assert read(["LOGGING"], **PRODUCTION, LOG_LEVEL="warning")["LOGGING"]["root"]["level"] == (
        "WARNING"
    )


def test_backup_providers_of_the_stock_ones_need_only_the_channel_order():
    order = {"email": ["email"], "sms": ["sms", "in_app"], "in_app": ["in_app"]}
    found = read(["CHANNEL_PROVIDERS"], **PRODUCTION, CHANNEL_PROVIDERS_JSON=json.dumps(order))
    assert found["CHANNEL_PROVIDERS"] == order


def test_behind_an_https_proxy_forms_from_the_public_origin_are_trusted_and_cookies_secure():
    found = read(
        ["CSRF_TRUSTED_ORIGINS", "SESSION_COOKIE_SECURE", "SECURE_PROXY_SSL_HEADER"],
        **PRODUCTION,
        PUBLIC_BASE_URL="https://notify.example.com",
        SECURE_PROXY_SSL="1",
    )
    assert found == {
        "CSRF_TRUSTED_ORIGINS": ["https://notify.example.com"],
        "SESSION_COOKIE_SECURE": True,
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
    }


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"SWEEP_STUCK_AFTER_SECONDS": "300"}, "SWEEP_STUCK_AFTER_SECONDS (300)"),
        ({"CELERY_TASK_TIME_LIMIT": "900"}, "CELERY_TASK_TIME_LIMIT (900)"),
        ({"BROADCAST_TASK_SECONDS": "270"}, "BROADCAST_TASK_SECONDS (270)"),
        ({"SEND_BATCH_SECONDS": "135"}, "SEND_BATCH_SECONDS (135)"),
        ({"SEND_BATCH_SECONDS": "0"}, "SEND_BATCH_SECONDS (0)"),
    ],
)
def test_timings_out_of_order_are_refused_at_start(env, named):
    done = settings_of(["SWEEP_STUCK_AFTER_SECONDS"], **PRODUCTION, **env)

    assert done.returncode != 0
    assert "ImproperlyConfigured" in done.stderr and named in done.stderr


@pytest.mark.parametrize("name", ["SEND_BATCH_SIZE", "MARKETING_SEND_BATCH_SIZE"])
def test_a_send_batch_size_below_one_is_refused_at_start(name):
    done = settings_of([name], **PRODUCTION, **{name: "0"})

    assert done.returncode != 0
    assert "ImproperlyConfigured" in done.stderr and f"{name} (0)" in done.stderr


def test_a_lowered_task_time_limit_keeps_the_batch_deadlines_inside_it():
    names = ["BROADCAST_TASK_SECONDS", "SEND_BATCH_SECONDS"]
    got = read(names, **PRODUCTION, CELERY_TASK_TIME_LIMIT="60")
    assert got == {"BROADCAST_TASK_SECONDS": 18, "SEND_BATCH_SECONDS": 13}
