from typing import NamedTuple

import pytest
from django.test import TestCase
from rest_framework.test import APIClient
from rest_framework_api_key.models import APIKey

from notifications import enqueue


class CommittingClient(APIClient):
    """An API client whose requests run their on-commit work (routing, sending) at once.

    Tests inside a rolled-back transaction never commit; this runs the callbacks as a
    commit would, tasks eagerly, callbacks they register included.
    """

    def generic(self, *args, **kwargs):
        with TestCase.captureOnCommitCallbacks(execute=True):
            return super().generic(*args, **kwargs)


@pytest.fixture
def api_key(db):
    _, key = APIKey.objects.create_key(name="test")
    return key


@pytest.fixture
def api(api_key):
    client = CommittingClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {api_key}")
    return client


class Published(NamedTuple):
    ids: list[int]
    traffic: str
    channel: str
    countdown: float


@pytest.fixture
def published_sends(monkeypatch) -> list[Published]:
    """Send tasks as they would be published, kept here instead of reaching the broker."""
    published: list[Published] = []

    def publish(ids, traffic, channel, countdown=0):
        published.append(Published(list(ids), traffic, channel, countdown))

    monkeypatch.setattr(enqueue, "publish_send", publish)
    return published
