"""RFC 8058 one-click unsubscribe, sent over real HTTP the way mail providers send it."""

from __future__ import annotations

import pytest
import requests

from preferences.links import unsubscribe_url
from preferences.models import ConsentLog, Preference
from preferences.services import preferences_snapshot

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def link(live_server, settings, ada, marketing):
    settings.PUBLIC_BASE_URL = live_server.url
    return unsubscribe_url(ada, marketing)


def promotions_frequency(recipient) -> str:
    return preferences_snapshot(recipient)["categories"]["promotions"]["frequency"]


def assert_one_click_answer(response: requests.Response) -> None:
    assert response.status_code == 200
    assert response.history == []
    assert "Set-Cookie" not in response.headers


def test_form_encoded_one_click_post_unsubscribes(link, ada):
    response = requests.post(
        link,
        data=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        allow_redirects=False,
        timeout=10,
    )
    assert_one_click_answer(response)
    assert promotions_frequency(ada) == "off"
    log = ConsentLog.objects.get()
    assert (log.source, log.action, log.ip_address) == (
        ConsentLog.Source.ONE_CLICK,
        "unsubscribe_category",
        "127.0.0.1",
    )


def test_multipart_one_click_post_unsubscribes(link, ada):
    response = requests.post(
        link,
        files={"List-Unsubscribe": (None, "One-Click")},
        allow_redirects=False,
        timeout=10,
    )
    assert response.request.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    assert_one_click_answer(response)
    assert promotions_frequency(ada) == "off"


def test_a_repeated_one_click_post_is_still_200_and_logs_once(link, ada):
    for _ in range(2):
        response = requests.post(link, data={"List-Unsubscribe": "One-Click"}, timeout=10)
        assert_one_click_answer(response)
    assert ConsentLog.objects.count() == 1


def test_one_click_stops_the_category_even_where_a_type_of_it_was_turned_on(link, ada):
    from preferences.services import Actor, preferences_update

    preferences_update(
        recipient=ada,
        changes={"types": {"weekly-deals": {"enabled": True, "channels": {"email": True}}}},
        actor=Actor(source=ConsentLog.Source.API),
    )
    response = requests.post(link, data={"List-Unsubscribe": "One-Click"}, timeout=10)
    assert_one_click_answer(response)
    snapshot = preferences_snapshot(ada)
    assert snapshot["categories"]["promotions"]["frequency"] == "off"
    assert snapshot["types"]["weekly-deals"] == {"enabled": False, "channels": {"email": False}}
    ada_marketing = ada.preferences.filter(notification_type__key="weekly-deals")
    assert not ada_marketing.filter(enabled=True).exists()


def test_a_get_of_the_same_url_changes_nothing(link, ada):
    response = requests.get(link, timeout=10)
    assert response.status_code == 200
    assert "<form" in response.text
    assert not Preference.objects.exists()
    assert not ConsentLog.objects.exists()


def test_a_tampered_token_does_nothing(link, ada):
    tampered = link[:-3] + ("x" if link[-3] != "x" else "y") + link[-2:]
    response = requests.post(tampered, data={"List-Unsubscribe": "One-Click"}, timeout=10)
    assert response.status_code == 400
    assert not Preference.objects.exists()
    assert not ConsentLog.objects.exists()
