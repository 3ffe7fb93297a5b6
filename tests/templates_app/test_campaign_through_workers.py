"""A marketing event to 30 people through real worker processes: compiled emails per locale."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from notifications import services
from notifications.models import Delivery
from templates_app.catalog import sync_file
from templates_app.models import Template
from tests.e2e.test_pipeline_end_to_end import wait_until_idle
from tests.factories import RecipientFactory

DEMO = Path(__file__).resolve().parents[2] / "demo" / "catalog.yaml"
LOCALES = ["en", "fr", "fr-CA"]

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_each_person_gets_the_compiled_email_of_their_locale_with_their_own_links(
    live_workers, smtp_server
):
    sync_file(DEMO)
    people = [
        RecipientFactory(external_id=f"p{i}", email=f"p{i}@example.com", locale=LOCALES[i % 3])
        for i in range(30)
    ]
    live_workers(concurrency=2)
    data = {"headline": "Autumn sale", "discount": 30, "url": "https://shop.example.com/deals"}

    services.notification_accept(
        api_key_id="k",
        event=services.EventRequest(
            type_key="weekly-deals", recipients=[p.external_id for p in people], data=data
        ),
    )
    messages = smtp_server.inbox.wait_for(30, timeout=60)
    wait_until_idle(timeout=60)

    versions = {
        t.locale: t.current_version_id
        for t in Template.objects.filter(notification_type__key="weekly-deals", channel="email")
    }
    unsubscribe_links = set()
    for message in messages:
        person = next(p for p in people if p.email == message["To"])
        french = person.locale.startswith("fr")
        assert message["Subject"] == (
            "Autumn sale : jusqu'à 30 % de remise" if french else "Autumn sale: up to 30% off"
        )
        html = message.get_body(("html",)).get_content()
        text = message.get_body(("plain",)).get_content()
        assert '<div class="wrap" style="max-width: 600px;' in html  # layout, CSS inlined
        assert re.search(r'href="https://shop\.example\.com/deals\?utm_[^"]*campaign=weekly', html)
        [link] = re.findall(r'href="([^"]*/unsubscribe/[^"]+)"', html)
        assert "utm_" not in link
        unsubscribe_links.add(link)
        assert "https://shop.example.com/deals?utm_" in text  # derived text part
        delivery = Delivery.objects.get(recipient=person, channel="email")
        assert delivery.template_version_id == versions["fr" if french else "en"]
    assert len(unsubscribe_links) == 30
