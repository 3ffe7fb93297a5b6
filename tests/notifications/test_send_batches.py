"""Send tasks are published per queue in batches sized by traffic class."""

from __future__ import annotations

import pytest
from django.test import TestCase

from notifications import enqueue

pytestmark = pytest.mark.django_db


def published_batches(deliveries, published_sends) -> list[tuple[str, str, list[int]]]:
    with TestCase.captureOnCommitCallbacks(execute=True):
        enqueue.sends_on_commit(deliveries)
    return [(p.traffic, p.channel, p.ids) for p in published_sends]


def test_marketing_and_transactional_take_their_own_batch_sizes(settings, published_sends):
    settings.SEND_BATCH_SIZE = 2
    settings.MARKETING_SEND_BATCH_SIZE = 5
    deliveries = [(i, "marketing", "email") for i in range(1, 13)]
    deliveries += [(i, "transactional", "email") for i in range(13, 18)]
    deliveries += [(i, "marketing", "sms") for i in range(18, 21)]

    batches = published_batches(deliveries, published_sends)

    def sizes(traffic, channel):
        return [len(ids) for t, c, ids in batches if (t, c) == (traffic, channel)]

    assert sizes("marketing", "email") == [5, 5, 2]
    assert sizes("transactional", "email") == [2, 2, 1]
    assert sizes("marketing", "sms") == [3]
    assert sorted(i for _, _, ids in batches for i in ids) == list(range(1, 21))
