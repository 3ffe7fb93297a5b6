"""Clarion settings, read from the environment (12-factor).

With nothing configured Clarion runs in its single-machine trial mode: SQLite, a file
broker and the database cache. Everything else runs on PostgreSQL and Redis.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str = "") -> str:
    """A setting from the environment, or from the file named by NAME_FILE (container secrets).

    Set but empty is a value (no postal address, no status callback), not the default; the
    settings that cannot be empty say so where they are read.
    """
    path = os.environ.get(f"{name}_FILE")
    if path:
        return Path(path).read_text().strip()
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    value = env(name)
    if not value:
        return default
    return value.lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = env(name)
    return int(value) if value else default


def env_float(name: str, default: float) -> float:
    value = env(name)
    return float(value) if value else default


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


DATA_DIR = Path(env("CLARION_DATA_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", False)
TRIAL_SECRET_KEY = "insecure-trial-key-set-SECRET_KEY-in-production"  # noqa: S105 - public by design
SECRET_KEY = env("SECRET_KEY") or TRIAL_SECRET_KEY
# Keys the hashes of suppressed addresses, so the list survives an erase without holding
# the address itself. Changing it orphans existing suppressions.
SUPPRESSION_HASH_KEY = env("SUPPRESSION_HASH_KEY", SECRET_KEY)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")
# The port `make run` serves on (127.0.0.1). Not PORT: honcho sets that per process.
CLARION_PORT = env_int("CLARION_PORT", 8000)
# Absolute base of links placed in messages (preference center, unsubscribe).
PUBLIC_BASE_URL = env("PUBLIC_BASE_URL", f"http://127.0.0.1:{CLARION_PORT}").rstrip("/")
# The pages people open from messages are served from PUBLIC_BASE_URL: its origin posts forms.
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", PUBLIC_BASE_URL)
# Behind a TLS-terminating proxy: trust its X-Forwarded-Proto (only when it sets it).
if env_bool("SECURE_PROXY_SSL"):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Served over https: session and CSRF cookies only go back over https.
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool(
    "SECURE_COOKIES", PUBLIC_BASE_URL.startswith("https://")
)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_api_key",
    "drf_spectacular",
    "django_celery_beat",
    "anymail",
    "notifications",
    "preferences",
    "templates_app",
    "channels",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "config.middleware.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Trial mode: SQLite in the data directory. Production and tests: DATABASE_URL (PostgreSQL).
DATABASE_URL = env("DATABASE_URL")
TRIAL_MODE = not DATABASE_URL
if not TRIAL_MODE and SECRET_KEY == TRIAL_SECRET_KEY:
    # The trial key is public: with it anyone could sign unsubscribe and preference links.
    raise ImproperlyConfigured("Set SECRET_KEY: outside trial mode (DATABASE_URL) it is required")
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL or f"sqlite:///{DATA_DIR / 'clarion.sqlite3'}",
        conn_max_age=env_int("DB_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if TRIAL_MODE:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    # SQLite has no NULLS NOT DISTINCT; the trial mode accepts the weaker constraint.
    SILENCED_SYSTEM_CHECKS = ["models.W047"]
    # Several processes share the file: wait for the write lock instead of failing.
    DATABASES["default"]["OPTIONS"] = {"timeout": 30, "transaction_mode": "IMMEDIATE"}
    DATABASES["default"]["CONN_MAX_AGE"] = 0
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Redis holds short-lived shared state (circuit breakers, rate limits, the test clock).
REDIS_URL = env("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "config.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env("CACHE_KEY_PREFIX", "clarion"),
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "config.cache.DatabaseCache",
            "LOCATION": "clarion_cache",
        }
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("fr", "Français")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Without collectstatic (development, tests), serve straight from the apps' folders.
WHITENOISE_USE_FINDERS = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": (env("LOG_LEVEL") or "INFO").upper()},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# --- REST API ---------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["notifications.api.auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["notifications.api.auth.HasApiKey"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "notifications.api.errors.exception_handler",
    "DEFAULT_PARSER_CLASSES": ["notifications.api.parsers.StrictJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Clarion API",
    "DESCRIPTION": "Send notifications by email, SMS, in-app feed and webhook.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
}
API_BULK_MAX_ITEMS = env_int("API_BULK_MAX_ITEMS", 1000)
# A full bulk call of 1,000 events with a few KB of data each is over Django's 2.5 MB default;
# a larger body gets 413 request_too_large.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("API_MAX_BODY_BYTES", 10 * 1024 * 1024)
API_MAX_RECIPIENTS = env_int("API_MAX_RECIPIENTS", 1000)
# How long each web process trusts the notification types it read (notifications/types.py):
# a type changed on another node applies to new events within this many seconds.
TYPE_CACHE_SECONDS = env_float("TYPE_CACHE_SECONDS", 2.0)
# How long each process trusts which template versions it read as current
# (templates_app/selection.py): a version published on another node is sent within this time.
TEMPLATE_CACHE_SECONDS = env_float("TEMPLATE_CACHE_SECONDS", 2.0)

# --- Celery -----------------------------------------------------------------------------
if TRIAL_MODE and not env("CELERY_BROKER_URL"):
    _broker_dir = DATA_DIR / "broker"
    for _folder in ("queue", "processed", "control"):
        (_broker_dir / _folder).mkdir(parents=True, exist_ok=True)
    # kombu's folder transport, writing atomically (config/trial_broker.py). It ignores the
    # host; naming one keeps kombu from warning on every publish.
    CELERY_BROKER_URL = "trialfs://localhost/"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
        # An idle worker looks for new task files this often (kombu's default is 1 s per hop).
        "polling_interval": env_float("TRIAL_BROKER_POLL_SECONDS", 0.1),
    }
else:
    # Empty would be Celery's own default, a RabbitMQ on localhost as guest: never meant.
    CELERY_BROKER_URL = env("CELERY_BROKER_URL") or REDIS_URL or "redis://127.0.0.1:6379/0"
    # Redis re-delivers a task unacknowledged past this; every task finishes well before
    # (CELERY_TASK_TIME_LIMIT) and long waits are parked in PostgreSQL, never in the broker.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600),
    }
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 300)
# A tenth before the hard limit, so a task can put its batch back in order (it follows a
# lowered CELERY_TASK_TIME_LIMIT; a soft limit past the hard one would never fire).
CELERY_TASK_SOFT_TIME_LIMIT = env_int(
    "CELERY_TASK_SOFT_TIME_LIMIT", CELERY_TASK_TIME_LIMIT - max(1, CELERY_TASK_TIME_LIMIT // 10)
)
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Publishing while the broker is down must not hang an API request: a few quick tries, then
# the sweeper picks the work up from PostgreSQL.
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": env_int("CELERY_PUBLISH_MAX_RETRIES", 2),
    "interval_start": 0,
    "interval_step": 0.1,
    "interval_max": 0.2,
}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Celery's Django fixup closes the DB connection after each task unless this is set.
CELERY_DB_REUSE_MAX = env_int("CELERY_DB_REUSE_MAX", 1000)

# --- Pipeline ---------------------------------------------------------------------------
# Deliveries sent per send task: one provider connection serves a whole batch. Marketing
# takes larger ones, spreading each batch's fixed cost (notifications/enqueue.py).
SEND_BATCH_SIZE = env_int("SEND_BATCH_SIZE", 100)
MARKETING_SEND_BATCH_SIZE = env_int("MARKETING_SEND_BATCH_SIZE", 500)
# How long a send batch renders and hands messages to providers (always one at least); the
# rest go back to the queue unsent, no attempt spent, so a slow provider or template never
# runs a batch into the task's time limit.
SEND_BATCH_SECONDS = env_int(
    "SEND_BATCH_SECONDS", max(1, min(60, CELERY_TASK_SOFT_TIME_LIMIT // 4))
)
# A transactional event of at most SEND_BATCH_SIZE deliveries is sent by its routing task
# right after it commits (one broker hop less); off: every send goes through its queue.
SEND_TRANSACTIONAL_INLINE = env_bool("SEND_TRANSACTIONAL_INLINE", True)
# Recipients a broadcast's fan-out decides and writes at a time (keyset batches).
BROADCAST_BATCH_SIZE = env_int("BROADCAST_BATCH_SIZE", 5000)
# Recipients a broadcast's fan-out writes per transaction (notifications/fanout.py): each
# chunk commits with its cursor and its sends start at once.
BROADCAST_CHUNK_SIZE = env_int("BROADCAST_CHUNK_SIZE", 100_000)
# How long one routing task takes chunks before it queues another to carry on: well inside
# the task time limit, with room for the chunk in progress.
BROADCAST_TASK_SECONDS = env_int("BROADCAST_TASK_SECONDS", CELERY_TASK_SOFT_TIME_LIMIT // 3)
# Notifications routed per routing task (bulk API calls are routed in chunks).
ROUTE_BATCH_SIZE = env_int("ROUTE_BATCH_SIZE", 100)
# How long an unanswered routing doorbell (notifications/doorbell.py) holds back another
# routing task of its traffic: the delay before routing resumes if a task was lost.
ROUTE_DOORBELL_SECONDS = env_int("ROUTE_DOORBELL_SECONDS", 10)
# Attempts per delivery before it fails (and falls back), per channel.
MAX_ATTEMPTS = {
    "email": env_int("EMAIL_MAX_ATTEMPTS", 5),
    "sms": env_int("SMS_MAX_ATTEMPTS", 5),
    "in_app": env_int("IN_APP_MAX_ATTEMPTS", 3),
    "webhook": env_int("WEBHOOK_MAX_ATTEMPTS", 8),
}
# Exponential backoff with full jitter: random(0, min(cap, base * 2**attempt)) seconds.
RETRY_BACKOFF_BASE_SECONDS = env_float("RETRY_BACKOFF_BASE_SECONDS", 2)
RETRY_BACKOFF_CAP_SECONDS = env_float("RETRY_BACKOFF_CAP_SECONDS", 3600)
# How long a delivery may sit in pending/sending before the sweeper enqueues it again.
SWEEP_STUCK_AFTER_SECONDS = env_int("SWEEP_STUCK_AFTER_SECONDS", 600)
# How long the send journal (notifications/journal.py) remembers a delivery's progress: well
# past the sweep timeout, so a sweep always finds it.
SEND_JOURNAL_TTL_SECONDS = env_int("SEND_JOURNAL_TTL_SECONDS", 86400)

# Timings that hold only in this order. A task is killed (CELERY_TASK_TIME_LIMIT) before the
# sweeper takes its work back: a send still running when swept could go out twice, and its
# late outcome would be written over the resend's. A routing task hands a broadcast on well
# before its soft time limit, with room for the chunk in progress; a send batch stops handing
# out messages with room for the one in flight (a provider's timeouts) and the records.
if SWEEP_STUCK_AFTER_SECONDS <= CELERY_TASK_TIME_LIMIT:
    raise ImproperlyConfigured(
        f"SWEEP_STUCK_AFTER_SECONDS ({SWEEP_STUCK_AFTER_SECONDS}) must exceed "
        f"CELERY_TASK_TIME_LIMIT ({CELERY_TASK_TIME_LIMIT})"
    )
if not 1 <= SEND_BATCH_SECONDS < CELERY_TASK_SOFT_TIME_LIMIT / 2:
    raise ImproperlyConfigured(
        f"SEND_BATCH_SECONDS ({SEND_BATCH_SECONDS}) must be at least 1 and under half of "
        f"CELERY_TASK_SOFT_TIME_LIMIT ({CELERY_TASK_SOFT_TIME_LIMIT})"
    )
if BROADCAST_TASK_SECONDS >= CELERY_TASK_SOFT_TIME_LIMIT:
    raise ImproperlyConfigured(
        f"BROADCAST_TASK_SECONDS ({BROADCAST_TASK_SECONDS}) must be well under "
        f"CELERY_TASK_SOFT_TIME_LIMIT ({CELERY_TASK_SOFT_TIME_LIMIT})"
    )
for _name, _size in (
    ("SEND_BATCH_SIZE", SEND_BATCH_SIZE),
    ("MARKETING_SEND_BATCH_SIZE", MARKETING_SEND_BATCH_SIZE),
):
    if _size < 1:  # a batch that never fills would send everything in one task
        raise ImproperlyConfigured(f"{_name} ({_size}) must be at least 1")

# --- Circuit breakers and send rates (channels/breaker.py, channels/ratelimit.py) --------
# Defaults for every provider; a PROVIDERS entry may override them under "breaker".
BREAKER_FAILURE_RATIO = env_float("BREAKER_FAILURE_RATIO", 0.5)
BREAKER_MIN_CALLS = env_int("BREAKER_MIN_CALLS", 10)
BREAKER_WINDOW_SECONDS = env_int("BREAKER_WINDOW_SECONDS", 60)
BREAKER_OPEN_SECONDS = env_float("BREAKER_OPEN_SECONDS", 30)
BREAKER_PROBE_TIMEOUT_SECONDS = env_int("BREAKER_PROBE_TIMEOUT_SECONDS", 60)
# A batch waits this long at most for its provider's send rate; the rest is retried later.
RATE_LIMIT_MAX_WAIT_SECONDS = env_float("RATE_LIMIT_MAX_WAIT_SECONDS", 1)
SWEEP_INTERVAL_SECONDS = env_float("SWEEP_INTERVAL_SECONDS", 60)
RELEASE_INTERVAL_SECONDS = env_float("RELEASE_INTERVAL_SECONDS", 5)
# Retries due sooner than this stay in the broker (countdown); later ones are parked in the DB.
RETRY_PARK_AFTER_SECONDS = env_float("RETRY_PARK_AFTER_SECONDS", 5)
# Tests move time across processes through the shared cache; off in production.
CLOCK_OFFSET_ENABLED = env_bool("CLOCK_OFFSET_ENABLED", False)

# --- Channels and providers -------------------------------------------------------------
EMAIL_BACKEND = env("EMAIL_BACKEND") or "django.core.mail.backends.console.EmailBackend"
EMAIL_HOST = env("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
EMAIL_FILE_PATH = env("EMAIL_FILE_PATH", str(DATA_DIR / "mail"))
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "Clarion <notifications@example.com>")
# anymail's tracking webhooks (/webhooks/anymail/<esp>/tracking/) refuse any request without
# this HTTP basic auth "user:password"; configure the same in the ESP's webhook URL.
ANYMAIL = {"WEBHOOK_SECRET": env("ANYMAIL_WEBHOOK_SECRET")} if env("ANYMAIL_WEBHOOK_SECRET") else {}
# The ESP whose tracking webhook is answered: the one EMAIL_BACKEND sends through (e.g.
# "postmark" for anymail.backends.postmark.EmailBackend), unless given.
EMAIL_TRACKING_ESP = env(
    "EMAIL_TRACKING_ESP",
    EMAIL_BACKEND.split(".")[2] if EMAIL_BACKEND.startswith("anymail.backends.") else "",
)
# Mailbox that receives mailto: unsubscribes (optional List-Unsubscribe mailto: target).
UNSUBSCRIBE_MAILTO = env("UNSUBSCRIBE_MAILTO")
# CAN-SPAM: a physical postal address in every marketing email.
SENDER_POSTAL_ADDRESS = env("SENDER_POSTAL_ADDRESS", "Clarion, 1 Example Street, Springfield")

TWILIO_ACCOUNT_SID = env("TWILIO_ACCOUNT_SID")
TWILIO_AUTH_TOKEN = env("TWILIO_AUTH_TOKEN")
TWILIO_FROM_NUMBER = env("TWILIO_FROM_NUMBER")
TWILIO_MESSAGING_SERVICE_SID = env("TWILIO_MESSAGING_SERVICE_SID")
# Points the twilio client at another base URL (tests use a fake Twilio on loopback).
TWILIO_API_BASE_URL = env("TWILIO_API_BASE_URL")
SMS_BACKEND = env("SMS_BACKEND", "console" if not TWILIO_ACCOUNT_SID else "twilio")
TWILIO_TIMEOUT_SECONDS = env_float("TWILIO_TIMEOUT_SECONDS", 15)
# Replies to SMS keywords (empty: no reply, e.g. when Twilio's Advanced Opt-Out answers itself).
SMS_STOP_REPLY = env(
    "SMS_STOP_REPLY",
    "You are unsubscribed and will receive no more messages. Reply START to resume.",
)
SMS_START_REPLY = env("SMS_START_REPLY", "You are subscribed again. Reply STOP to unsubscribe.")
SMS_HELP_REPLY = env("SMS_HELP_REPLY", "Reply STOP to unsubscribe, START to resubscribe.")
# Twilio reports delivery status here; only when Clarion has an address Twilio can reach.
TWILIO_STATUS_CALLBACK_URL = env(
    "TWILIO_STATUS_CALLBACK_URL",
    f"{PUBLIC_BASE_URL}/webhooks/twilio/status/" if env("PUBLIC_BASE_URL") else "",
)

# Outbound HTTP (channels/http.py): every provider and webhook request has both timeouts.
HTTP_CONNECT_TIMEOUT_SECONDS = env_float("HTTP_CONNECT_TIMEOUT_SECONDS", 5)
HTTP_READ_TIMEOUT_SECONDS = env_float("HTTP_READ_TIMEOUT_SECONDS", 15)
WEBHOOK_TIMEOUT_SECONDS = env_float("WEBHOOK_TIMEOUT_SECONDS", 10)
# Outbound webhooks are signed with this (HMAC-SHA256, docs/webhooks.md). Set it in
# production and share it with receivers; the default derives from SECRET_KEY.
WEBHOOK_SIGNING_SECRET = env("WEBHOOK_SIGNING_SECRET")
# Outbound webhooks refuse private, link-local and loopback targets unless allowed.
WEBHOOK_ALLOW_LOOPBACK = env_bool("WEBHOOK_ALLOW_LOOPBACK", TRIAL_MODE)
WEBHOOK_ALLOW_PRIVATE = env_bool("WEBHOOK_ALLOW_PRIVATE", False)

# Providers by name: the channel each serves, its backend class (dotted path, like
# EMAIL_BACKEND) and its options. CHANNEL_PROVIDERS orders each channel's providers, primary
# first, backups after. PROVIDERS_JSON / CHANNEL_PROVIDERS_JSON replace them from the env.
PROVIDERS = {
    "email": {"channel": "email", "backend": "channels.email.EmailProvider", "options": {}},
    "sms": {
        "channel": "sms",
        "backend": "channels.sms.TwilioProvider"
        if SMS_BACKEND == "twilio"
        else "channels.sms.ConsoleSmsProvider",
        "options": {},
    },
    "in_app": {"channel": "in_app", "backend": "channels.in_app.FeedProvider", "options": {}},
    "webhook": {"channel": "webhook", "backend": "channels.webhook.WebhookProvider", "options": {}},
}
CHANNEL_PROVIDERS = {
    "email": ["email"],
    "sms": ["sms"],
    "in_app": ["in_app"],
    "webhook": ["webhook"],
}
# Each on its own: backups of the stock providers need only CHANNEL_PROVIDERS_JSON.
if env("PROVIDERS_JSON"):
    PROVIDERS = json.loads(env("PROVIDERS_JSON"))
if env("CHANNEL_PROVIDERS_JSON"):
    CHANNEL_PROVIDERS = json.loads(env("CHANNEL_PROVIDERS_JSON"))

# Beat runs these on every deployment; DatabaseScheduler keeps them in PostgreSQL.
CELERY_BEAT_SCHEDULE = {
    "release-due": {"task": "clarion.release_due", "schedule": RELEASE_INTERVAL_SECONDS},
    "sweep-stuck": {"task": "clarion.sweep_stuck", "schedule": SWEEP_INTERVAL_SECONDS},
}

# A provider report that arrives before its send batch recorded the message id is parked and
# tried again this often; one that names no delivery after the wait is applied without one.
PROVIDER_REPORT_RETRY_SECONDS = env_float("PROVIDER_REPORT_RETRY_SECONDS", 30)
PROVIDER_REPORT_WAIT_SECONDS = env_int("PROVIDER_REPORT_WAIT_SECONDS", 3600)
CELERY_BEAT_SCHEDULE["apply-parked-reports"] = {
    "task": "clarion.apply_parked_reports",
    "schedule": PROVIDER_REPORT_RETRY_SECONDS,
}

# --- Preferences, unsubscribe, frequency ------------------------------------------------
# How long a preference-center or unsubscribe link in a message keeps working.
PREFERENCE_TOKEN_MAX_AGE_SECONDS = env_int("PREFERENCE_TOKEN_MAX_AGE_SECONDS", 180 * 24 * 3600)
# Quiet hours applied to people who set none ("22:00-08:00", local time); empty: none.
DEFAULT_QUIET_HOURS = env("DEFAULT_QUIET_HOURS")
# Marketing messages per person per local day, across types; 0: no cap. Over the cap a
# message is skipped ("skip", reason capped) or deferred to the next local day ("defer").
MARKETING_DAILY_CAP = env_int("MARKETING_DAILY_CAP", 0)
MARKETING_CAP_MODE = env("MARKETING_CAP_MODE", "skip")
# Digests go out at this local hour; weekly ones on this weekday (0 = Monday).
DIGEST_LOCAL_HOUR = env_int("DIGEST_LOCAL_HOUR", 8)
DIGEST_WEEKDAY = env_int("DIGEST_WEEKDAY", 0)
DIGEST_INTERVAL_SECONDS = env_float("DIGEST_INTERVAL_SECONDS", 300)
CELERY_BEAT_SCHEDULE["send-digests"] = {
    "task": "clarion.send_digests",
    "schedule": DIGEST_INTERVAL_SECONDS,
}

# Message templates (issue 6): limits of the Jinja2 sandbox, per part and per render.
TEMPLATE_MAX_SOURCE_CHARS = env_int("TEMPLATE_MAX_SOURCE_CHARS", 200_000)
TEMPLATE_MAX_OUTPUT_CHARS = env_int("TEMPLATE_MAX_OUTPUT_CHARS", 1_000_000)
TEMPLATE_MAX_LOOP_ITERATIONS = env_int("TEMPLATE_MAX_LOOP_ITERATIONS", 1_000_000)
TEMPLATE_MAX_RENDER_SECONDS = env_float("TEMPLATE_MAX_RENDER_SECONDS", 0.5)
