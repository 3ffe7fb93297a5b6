"""The Celery app shared by every worker and beat, and its queue layout.

Transactional and marketing traffic never share a queue, and transactional queues have a
worker process of their own (prefetch is per worker), so a campaign never delays a password
reset. Queue names: ``route.<traffic>`` and ``send.<traffic>.<channel>``.
"""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_init
from kombu.transport import TRANSPORT_ALIASES

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Trial mode's folder broker with atomic writes (config/trial_broker.py), as "trialfs://".
TRANSPORT_ALIASES.setdefault("trialfs", "config.trial_broker:Transport")

app = Celery("clarion")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

CHANNELS = ("email", "sms", "in_app", "webhook")
TRAFFIC = ("transactional", "marketing")


def route_queue(traffic: str) -> str:
    return f"route.{traffic}"


def send_queue(traffic: str, channel: str) -> str:
    return f"send.{traffic}.{channel}"


def queues_for(traffic: str) -> list[str]:
    """Every queue that carries one kind of traffic."""
    return [route_queue(traffic)] + [send_queue(traffic, c) for c in CHANNELS]


MAINTENANCE_QUEUE = "maintenance"
app.conf.task_default_queue = MAINTENANCE_QUEUE


@worker_init.connect
def load_urlconf(**kwargs) -> None:
    """Load the URLconf in the main process, before the pool forks.

    Every message carries links built with ``reverse``, and the first ``reverse`` imports
    the whole URLconf (admin, API, webhooks): about 9 MB that each pool child loaded again
    on its first message. Loaded here, the children share the parent's copy.
    """
    from django.urls import get_resolver

    get_resolver().reverse_dict  # noqa: B018 - the property builds the reverse lookup tables
