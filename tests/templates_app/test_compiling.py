"""Compiling a version: layout, marketing footer, inlined CSS, derived text, UTM; versions."""

from __future__ import annotations

import pytest
from django.test import TestCase

from notifications import services
from notifications.models import Delivery
from templates_app.models import Layout, TemplateVersion, UtmParameters
from templates_app.rendering import render_version
from templates_app.services import template_version_save
from templates_app.validation import TemplateInvalid, sample_context
from tests.factories import NotificationTypeFactory, RecipientFactory, TemplateFactory

pytestmark = pytest.mark.django_db

EMAIL = {
    "subject": "Order {{ data.order_id }}",
    "html": '<p class="lead">Order <b>{{ data.order_id }}</b> &amp; more.</p>'
    "<table>{% for line in data.lines %}<tr><td>{{ line }}</td></tr>{% endfor %}</table>"
    '<p><a href="{{ data.url }}">Track it</a> or <a href="https://shop.example.com/help?x=1">'
    "help</a></p>",
}
DATA = {"order_id": "A-1", "lines": ["one", "two"], "url": "https://track.example.com/A-1"}


def email_template(traffic="transactional", layout=None):
    ntype = NotificationTypeFactory(channels=["email"], traffic=traffic, sample_data=DATA)
    return TemplateFactory(notification_type=ntype, channel="email", layout=layout)


def rendered(version):
    return render_version(version, sample_context(DATA))


def test_layout_wraps_the_content_and_its_css_is_inlined_once():
    layout = Layout.objects.create(
        key="brand",
        name="Brand",
        html="<html><head><style>.lead { color: #123456 }</style></head>"
        "<body><header>ACME</header>{{ content }}</body></html>",
    )
    version, _ = template_version_save(email_template(layout=layout), EMAIL)

    html = rendered(version)["html"]

    assert "<header>ACME</header>" in html
    assert 'class="lead" style="color: #123456;"' in html
    assert "<style>" not in version.compiled["html"]
    assert "<tr><td>one</td></tr><tr><td>two</td></tr>" in html.replace("<tbody>", "")


def test_a_layout_named_default_is_used_when_the_template_names_none():
    Layout.objects.create(key="default", name="D", html="<div id=wrap>{{ content }}</div>")

    version, _ = template_version_save(email_template(), EMAIL)

    assert '<div id="wrap"><p class="lead"' in rendered(version)["html"]
    assert version.compiled["_compiled"]["layout"] == "default"


def test_the_text_part_is_derived_from_html_when_not_written():
    version, _ = template_version_save(email_template(), EMAIL)

    text = rendered(version)["text"]

    assert "Order A-1 & more." in text
    assert "Track it (https://track.example.com/A-1)" in text
    assert "<" not in text
    assert "one\n\ntwo" in text
    assert version.compiled["_compiled"]["text_derived"] is True


def test_a_written_text_part_is_kept():
    version, _ = template_version_save(
        email_template(), {**EMAIL, "text": "Plain {{ data.order_id }}"}
    )

    assert rendered(version)["text"] == "Plain A-1"


def test_marketing_mail_gets_the_footer_with_links_and_postal_address(settings):
    settings.SENDER_POSTAL_ADDRESS = "ACME, 5 Rue Test, Lyon"
    version, _ = template_version_save(email_template(traffic="marketing"), EMAIL)

    parts = rendered(version)

    assert "/unsubscribe/sample-token/" in parts["html"]
    assert "/preferences/sample-token/" in parts["html"]
    assert "ACME, 5 Rue Test, Lyon" in parts["html"]
    assert "Unsubscribe (http" in parts["text"] and "ACME, 5 Rue Test, Lyon" in parts["text"]


@pytest.mark.parametrize(
    "mention",
    [
        "{# links.unsubscribe_url goes here one day #}",
        "<p>Write links.unsubscribe_url in your template</p>",
        "{% raw %}{{ links.unsubscribe_url }}{% endraw %}",
    ],
    ids=["comment", "plain-text", "raw"],
)
def test_marketing_mail_that_only_mentions_the_unsubscribe_link_still_gets_the_footer(mention):
    content = {**EMAIL, "html": EMAIL["html"] + mention, "text": "Deal\n" + mention}
    version, _ = template_version_save(email_template(traffic="marketing"), content)

    parts = rendered(version)

    assert "/unsubscribe/sample-token/" in parts["html"]
    assert "Unsubscribe (http" in parts["text"] or "/unsubscribe/sample-token/" in parts["text"]


def test_marketing_mail_with_its_own_unsubscribe_link_gets_no_second_one():
    own = "<a href=\"{{ links['unsubscribe_url'] }}\">Leave</a> {{ links.preferences_url }}"
    content = {**EMAIL, "html": EMAIL["html"] + own, "text": "Leave: {{ links.unsubscribe_url }}"}
    version, _ = template_version_save(email_template(traffic="marketing"), content)

    parts = rendered(version)

    assert parts["html"].count("/unsubscribe/sample-token/") == 1
    assert parts["text"].count("/unsubscribe/sample-token/") == 1


def test_a_marketing_email_compiled_from_an_older_html_less_version_still_gets_the_footer():
    from templates_app.compiling import compile_content

    template = email_template(traffic="marketing")

    compiled = compile_content(template, {"subject": "Sale", "html": "", "text": "Buy now"})

    assert "links.unsubscribe_url" in compiled["html"]
    assert compiled["text"].startswith("Buy now") and "links.unsubscribe_url" in compiled["text"]


def test_transactional_mail_gets_no_marketing_footer():
    version, _ = template_version_save(email_template(), EMAIL)

    assert "unsubscribe" not in rendered(version)["html"].lower()


def test_utm_parameters_are_added_to_literal_and_data_links_but_not_our_own():
    template = email_template(traffic="marketing")
    UtmParameters.objects.create(
        notification_type=template.notification_type,
        params={"utm_source": "clarion", "utm_campaign": "autumn"},
    )
    version, _ = template_version_save(template, EMAIL)

    parts = rendered(version)

    assert (
        'href="https://track.example.com/A-1?utm_source=clarion&amp;utm_campaign=autumn"'
        in (parts["html"])
    )
    assert (
        "https://shop.example.com/help?x=1&amp;utm_source=clarion&amp;utm_campaign=autumn"
        in (parts["html"])
    )
    assert "https://track.example.com/A-1?utm_source=clarion&utm_campaign=autumn" in parts["text"]
    assert '/unsubscribe/sample-token/"' in parts["html"]


def test_saving_the_same_content_again_makes_no_version_but_a_layout_change_does():
    layout = Layout.objects.create(key="l", name="L", html="<div>{{ content }}</div>")
    template = email_template(layout=layout)
    first, created = template_version_save(template, EMAIL)
    again, created_again = template_version_save(template, EMAIL)
    layout.html = "<section>{{ content }}</section>"
    layout.save()

    changed, created_changed = template_version_save(template, EMAIL)

    assert created and not created_again and again == first
    assert created_changed and changed.number == 2
    assert "<section>" in changed.compiled["html"]


def test_invalid_content_is_refused_with_the_line_and_saves_nothing():
    template = email_template()

    with pytest.raises(TemplateInvalid) as caught:
        template_version_save(template, {**EMAIL, "html": "<p>\n{% if data.x %}\n</p>"})

    assert any(p.startswith("html, line") and "endif" in p for p in caught.value.problems)
    assert not TemplateVersion.objects.exists()


def test_each_delivery_records_the_version_it_was_rendered_from(settings):
    template = email_template()
    first, _ = template_version_save(template, EMAIL)
    recipient = RecipientFactory(email="ada@example.com")

    def send():
        event = services.EventRequest(
            type_key=template.notification_type.key, recipients=[recipient.external_id], data=DATA
        )
        with TestCase.captureOnCommitCallbacks(execute=True):
            accepted = services.notification_accept(api_key_id="k", event=event)
        return Delivery.objects.get(notification=accepted.notification)

    before = send()
    second, _ = template_version_save(template, {**EMAIL, "subject": "Shipped {{ data.order_id }}"})
    after = send()

    assert before.status == after.status == Delivery.Status.SENT
    assert before.template_version_id == first.id
    assert after.template_version_id == second.id
    assert (before.summary, after.summary) == ("Order A-1", "Shipped A-1")


def test_a_line_break_in_event_data_never_adds_a_header_to_the_sent_mail(smtp_server):
    template = email_template()
    template_version_save(template, EMAIL)
    recipient = RecipientFactory(email="ada@example.com")
    data = {**DATA, "order_id": "A-1\r\nBcc: thief@example.com\r\nX-Evil: 1"}
    event = services.EventRequest(
        type_key=template.notification_type.key, recipients=[recipient.external_id], data=data
    )

    with TestCase.captureOnCommitCallbacks(execute=True):
        services.notification_accept(api_key_id="k", event=event)

    [message] = smtp_server.inbox.wait_for(1)
    assert message["Bcc"] is None and message["X-Evil"] is None
    assert message["Subject"] == "Order A-1 Bcc: thief@example.com X-Evil: 1"
    assert Delivery.objects.get().status == Delivery.Status.SENT


def test_a_render_error_with_one_event_fails_that_delivery_only():
    ntype = NotificationTypeFactory(channels=["email"], sample_data={"n": 2})
    template = TemplateFactory(notification_type=ntype, channel="email")
    template_version_save(template, {"subject": "Per item {{ 10 / data.n }}", "html": "<p>x</p>"})
    ada, bob = RecipientFactory(email="ada@example.com"), RecipientFactory(email="b@example.com")

    def send(data):
        event = services.EventRequest(
            type_key=ntype.key, recipients=[ada.external_id, bob.external_id], data=data
        )
        with TestCase.captureOnCommitCallbacks(execute=True):
            services.notification_accept(api_key_id="k", event=event)

    send({"n": 0})
    send({"n": 5})

    failed = Delivery.objects.filter(status=Delivery.Status.FAILED)
    assert failed.count() == 2
    assert all("render: ZeroDivisionError" in d.error_message for d in failed)
    assert Delivery.objects.filter(status=Delivery.Status.SENT).count() == 2
