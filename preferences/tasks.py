"""Celery tasks of the preferences app: each calls a service."""

from __future__ import annotations

from celery import shared_task

from . import digests


@shared_task(name="clarion.send_digests")
def send_digests() -> int:
    return digests.send_digests()
