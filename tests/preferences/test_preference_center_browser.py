"""The preference center in headless Chromium, from the link in a captured email."""

from __future__ import annotations

import re

import pytest

from notifications.models import Delivery

from .conftest import send

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def preference_link(message) -> str:
    text = message.get_body(("plain",)).get_content()
    return re.search(r"Preferences: (\S+)", text).group(1)


def test_switching_a_category_off_in_the_browser_stops_its_marketing(
    live_server, settings, smtp_server, browser, ada, marketing, password_reset
):
    settings.PUBLIC_BASE_URL = live_server.url
    send(marketing, [ada], {"deal": "first"})
    [first] = smtp_server.inbox.wait_for(1)
    link = preference_link(first)
    assert link.startswith(f"{live_server.url}/preferences/")

    page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone
    page.goto(link)
    assert page.title() == "Email preferences"
    frequency = page.get_by_label("How often")
    assert frequency.input_value() == "instant"
    assert page.get_by_label("Email").is_checked()
    frequency.select_option("off")
    page.get_by_role("button", name="Save preferences").click()
    page.wait_for_url(re.compile(r"\?saved=1$"))
    assert page.get_by_role("status").inner_text() == "Your preferences are saved."
    page.goto(link)  # a fresh load shows what was stored
    assert page.get_by_label("How often").input_value() == "off"
    assert page.get_by_role("status").count() == 0

    second = send(marketing, [ada], {"deal": "second"})
    delivery = Delivery.objects.get(notification=second)
    assert (delivery.status, delivery.skip_reason) == ("skipped", "opted_out_category")
    send(password_reset, [ada], {"code": "99"})
    messages = smtp_server.inbox.wait_for(2)
    assert [m["Subject"] for m in messages] == ["Deal first", "Reset your password"]


def test_the_unsubscribe_button_in_the_browser(live_server, settings, browser, ada, marketing):
    from preferences.links import unsubscribe_url
    from preferences.services import preferences_snapshot

    settings.PUBLIC_BASE_URL = live_server.url
    page = browser.new_page()
    page.goto(unsubscribe_url(ada, marketing))
    assert preferences_snapshot(ada)["categories"]["promotions"]["frequency"] == "instant"
    page.get_by_role("button", name="Unsubscribe").click()
    page.get_by_role("heading", name="You are unsubscribed").wait_for()
    assert page.context.cookies() == []
    assert preferences_snapshot(ada)["categories"]["promotions"]["frequency"] == "off"
