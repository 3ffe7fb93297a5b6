"""What marketing and transactional messages carry: List-Unsubscribe, footer, SMS opt-out."""

from __future__ import annotations

import re

import pytest

from notifications.messages import MessageBuilder
from notifications.models import Delivery, Notification, Traffic
from preferences.tokens import PREFERENCES, UNSUBSCRIBE, read_token

from .conftest import make_type, send

pytestmark = pytest.mark.django_db


def test_marketing_email_has_both_headers_and_a_footer(smtp_server, settings, ada, marketing):
    settings.PUBLIC_BASE_URL = "https://notify.example.com"
    settings.UNSUBSCRIBE_MAILTO = "unsubscribe@example.com"
    settings.SENDER_POSTAL_ADDRESS = "Example Ltd, 5 Quay Street, Dublin"
    send(marketing, [ada], {"deal": "D-1"})
    [message] = smtp_server.inbox.wait_for(1)
    header = str(message["List-Unsubscribe"]).strip()
    match = re.fullmatch(
        r"<https://notify\.example\.com/unsubscribe/([^/]+)/>, "
        r"<mailto:unsubscribe@example\.com\?subject=unsubscribe>",
        header,
    )
    assert match, header
    assert read_token(match.group(1), UNSUBSCRIBE).category == marketing.category
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text = message.get_body(("plain",)).get_content()
    center = re.search(r"Preferences: https://notify\.example\.com/preferences/([^/]+)/", text)
    assert read_token(center.group(1), PREFERENCES).recipient == ada
    assert "Example Ltd, 5 Quay Street, Dublin" in text
    html = message.get_body(("html",)).get_content()
    assert "https://notify.example.com/unsubscribe/" in html


def test_transactional_email_has_no_list_unsubscribe(smtp_server, ada, password_reset):
    send(password_reset, [ada], {"code": "123456"})
    [message] = smtp_server.inbox.wait_for(1)
    assert message["Subject"] == "Reset your password"
    assert message["List-Unsubscribe"] is None
    assert message["List-Unsubscribe-Post"] is None


def test_without_a_mailto_only_the_https_target_is_listed(smtp_server, settings, ada, marketing):
    settings.UNSUBSCRIBE_MAILTO = ""
    send(marketing, [ada], {"deal": "D-2"})
    [message] = smtp_server.inbox.wait_for(1)
    assert message["List-Unsubscribe"].count("<") == 1
    assert "mailto:" not in message["List-Unsubscribe"]


def build_sms(ntype, recipient):
    row = Notification.objects.create(type=ntype, data={"deal": "S-1"})
    delivery = Delivery.objects.create(
        notification=row, recipient=recipient, channel="sms", traffic=ntype.traffic
    )
    delivery = Delivery.objects.select_related("recipient", "notification__type").get(
        id=delivery.id
    )
    message, _ = MessageBuilder().build(delivery)
    return message.content["text"]


def test_marketing_sms_carries_the_opt_out_wording_in_the_recipients_language(ada, promotions):
    ntype = make_type("sms-deals", Traffic.MARKETING, promotions, channels=("sms",))
    assert build_sms(ntype, ada) == "Deal S-1 Reply STOP to opt out."
    ada.locale = "fr"
    ada.save()
    assert build_sms(ntype, ada) == "Deal S-1 Répondez STOP pour vous désabonner."


def test_stop_inside_another_word_does_not_count_as_opt_out_wording(ada, promotions):
    from preferences.links import with_sms_opt_out

    ntype = make_type("sms-deals", Traffic.MARKETING, promotions, channels=("sms",))
    for text in ("NONSTOP savings", "Get a STOPWATCH for $5"):
        assert with_sms_opt_out(text, ada, ntype) == f"{text} Reply STOP to opt out."
    told = "Deals! Text STOP to quit."
    assert with_sms_opt_out(told, ada, ntype) == told


def test_transactional_sms_has_no_opt_out_wording(ada, promotions):
    ntype = make_type("sms-code", Traffic.TRANSACTIONAL, promotions, channels=("sms",))
    assert build_sms(ntype, ada) == "Deal S-1"


def test_links_and_headers_cost_no_query_per_recipient(settings, promotions):
    from tests.notifications.test_pipeline_queries import queries_to_route_and_send

    content = {
        "subject": "Order {{ data.order_id }}",
        "text": "{{ links.preferences_url }} {{ links.unsubscribe_url }} "
        "{{ links.postal_address }}",
    }
    marketing = make_type("deals", Traffic.MARKETING, promotions, content=content)
    small = queries_to_route_and_send(marketing, 10, settings)
    large = queries_to_route_and_send(marketing, 200, settings)
    assert small == large, f"{small} queries for 10 recipients, {large} for 200"


def test_a_marketing_sms_reaches_twilio_with_the_opt_out_wording(
    settings, http_server, ada, promotions
):
    from tests.support.twilio import use_fake_twilio

    twilio = use_fake_twilio(settings, http_server)
    deals = make_type("sms-deals", Traffic.MARKETING, promotions, channels=("sms",))
    code = make_type("sms-code", Traffic.TRANSACTIONAL, promotions, channels=("sms",))
    send(deals, [ada], {"deal": "T-1"})
    send(code, [ada], {"deal": "T-2"})
    bodies = [m["Body"] for m in twilio.messages()]
    assert bodies == ["Deal T-1 Reply STOP to opt out.", "Deal T-2"]


def test_links_are_the_urls_reverse_would_give(ada, marketing, settings):
    from django.urls import reverse

    from preferences.links import links_for

    links = links_for(ada, marketing)
    for name, url in (("center", "preferences_url"), ("unsubscribe", "unsubscribe_url")):
        token = links[url].rstrip("/").rsplit("/", 1)[1]
        expected = settings.PUBLIC_BASE_URL + reverse(f"preferences:{name}", args=[token])
        assert links[url] == expected
    assert read_token(links["unsubscribe_url"].rstrip("/").rsplit("/", 1)[1], UNSUBSCRIBE)
