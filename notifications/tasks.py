"""Celery tasks: each takes ids and calls a service. Nothing else lives here."""

from __future__ import annotations

from celery import shared_task

from . import recovery, routing, sending


@shared_task(name="clarion.route_notifications")
def route_notifications(notification_ids: list[str]) -> None:
    routing.route_notifications(notification_ids)


@shared_task(name="clarion.route_waiting")
def route_waiting(traffic: str) -> None:
    routing.route_waiting(traffic)


@shared_task(name="clarion.send_deliveries")
def send_deliveries(delivery_ids: list[int]) -> None:
    sending.send_deliveries(delivery_ids)


@shared_task(name="clarion.release_due")
def release_due() -> int:
    return recovery.release_due()


@shared_task(name="clarion.sweep_stuck")
def sweep_stuck() -> dict[str, int]:
    return recovery.sweep_stuck()
