"""Celery tasks of the channels app: each calls a service. Nothing else lives here."""

from __future__ import annotations

from celery import shared_task

from . import feedback


@shared_task(name="clarion.apply_parked_reports")
def apply_parked_reports() -> int:
    return feedback.apply_parked()
