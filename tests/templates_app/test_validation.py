"""Validation on save: injection payloads refused with a message, locales, SMS segments."""

from __future__ import annotations

import pytest

from templates_app.models import Layout, Template, TemplateVersion, UtmParameters
from templates_app.selection import locale_chain
from templates_app.services import template_version_save
from templates_app.validation import TemplateInvalid, sms_length, validate_content
from tests.factories import NotificationTypeFactory, TemplateFactory

SAMPLE = {"order_id": "A-1"}

# Each payload with the message that refuses it when staff save it.
REFUSED_AT_SAVE = [
    ("{{ settings.SECRET_KEY }}", "unknown variable 'settings'"),
    ("{{ request.META }}", "unknown variable 'request'"),
    ("{{ config }}", "unknown variable 'config'"),
    ("{{ ''.__class__.__mro__ }}", "access to attribute '__class__' of 'str' object is unsafe"),
    ("{{ cycler.__init__.__globals__ }}", "unknown variable 'cycler'"),
    ("{{ self }}", "line 1: 'self' is not available in message templates"),
    ("{% include '/etc/passwd' %}", "TemplateNotFound: /etc/passwd"),
    ("{% import 'config/settings.py' as s %}", "TemplateNotFound"),
    ("{{ data.order_id.__class__ }}", "is unsafe"),
    (
        "{% for i in range(100000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}",
        "more than 1,000,000 loop iterations",
    ),
    ("{% for i in range(11) %}{{ 'x' * 999999 }}{% endfor %}", "output cut: longer than"),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("payload", "message"), REFUSED_AT_SAVE)
def test_injection_payloads_are_refused_at_save_with_a_message(payload, message):
    ntype = NotificationTypeFactory(channels=["sms"], sample_data=SAMPLE)
    template = TemplateFactory(notification_type=ntype, channel="sms")

    with pytest.raises(TemplateInvalid) as caught:
        template_version_save(template, {"text": payload})

    assert any(message in problem for problem in caught.value.problems), caught.value.problems
    assert not TemplateVersion.objects.exists()


def test_syntax_errors_name_the_part_and_line():
    report = validate_content("email", {"subject": "Hi", "html": "<p>\n\n{% for x in %}</p>"})

    [error] = report.errors
    assert error.startswith("html, line 3: ")


def test_unknown_data_keys_are_warned_not_blocked():
    report = validate_content("sms", {"text": "{{ data.ordr_id }} {{ recipient.nme }}"}, SAMPLE)

    assert report.ok
    assert "text, line 1: data.ordr_id is not in the type's sample data" in report.warnings
    assert "text, line 1: recipient.nme is not in recipient" in report.warnings


def test_missing_and_unknown_parts_are_errors():
    report = validate_content("email", {"html": "x", "body": "y"})

    assert "missing parts: subject" in report.errors
    assert "unknown parts: body" in report.errors


@pytest.mark.parametrize(
    ("channel", "content", "blank"),
    [
        ("email", {"subject": "Sale", "html": " \n", "text": "Buy now"}, "html"),
        ("email", {"subject": "", "html": "<p>Buy</p>"}, "subject"),
        ("sms", {"text": "  "}, "text"),
        ("in_app", {"title": "", "body": "Read me"}, "title"),
    ],
)
def test_a_required_part_left_blank_is_an_error(channel, content, blank):
    report = validate_content(channel, content)

    assert f"empty parts: {blank}" in report.errors


def test_an_in_app_item_may_have_a_title_alone():
    assert validate_content("in_app", {"title": "Shipped", "body": ""}).ok


@pytest.mark.parametrize(
    ("text", "encoding", "segments"),
    [
        ("a" * 160, "GSM-7", 1),
        ("a" * 161, "GSM-7", 2),
        ("a" * 153 * 2 + "a", "GSM-7", 3),
        ("€" * 80, "GSM-7", 1),  # two septets each: 160
        ("€" * 81, "GSM-7", 2),
        ("é" * 160, "GSM-7", 1),
        ("ç" * 70, "UCS-2", 1),  # lower-case ç is not in GSM 03.38
        ("ç" * 71, "UCS-2", 2),
        ("😀" * 35, "UCS-2", 1),  # two UTF-16 units each
        ("😀" * 36, "UCS-2", 2),
    ],
)
def test_sms_segments_follow_the_encoding(text, encoding, segments):
    length = sms_length(text)

    assert (length.encoding, length.segments) == (encoding, segments)


def test_sms_length_is_reported_with_the_sample_data():
    report = validate_content("sms", {"text": "Order {{ data.order_id }} shipped"}, SAMPLE)

    assert str(report.sms) == "17 characters, GSM-7, 1 segment"


@pytest.mark.parametrize(
    ("locale", "chain"),
    [
        ("fr-CA", ["fr-ca", "fr", "en"]),
        ("fr_CA", ["fr-ca", "fr", "en"]),
        ("FR", ["fr", "en"]),
        ("en-GB", ["en-gb", "en"]),
        ("", ["en"]),
    ],
)
def test_locale_fallback_chain(locale, chain):
    assert locale_chain(locale) == chain


@pytest.mark.django_db
def test_saving_a_layout_in_the_admin_versions_the_emails_using_it(admin_client):
    layout = Layout.objects.create(key="default", name="D", html="<div>{{ content }}</div>")
    template = TemplateFactory(channel="email", notification_type__sample_data=SAMPLE)
    template_version_save(template, {"subject": "s", "html": "<p>{{ data.order_id }}</p>"})

    refused = admin_client.post(
        f"/admin/templates_app/layout/{layout.pk}/change/",
        {"key": "default", "name": "D", "html": "<section>no slot</section>", "text": ""},
    )
    assert "must place the content" in refused.text
    admin_client.post(
        f"/admin/templates_app/layout/{layout.pk}/change/",
        {"key": "default", "name": "D", "html": "<section>{{ content }}</section>", "text": ""},
    )

    template.refresh_from_db()
    assert template.current_version.number == 2
    assert (
        "<section><p>{{ data.order_id }}</p></section>" in template.current_version.compiled["html"]
    )


@pytest.mark.django_db
def test_deleting_a_layout_or_utm_parameters_in_the_admin_versions_the_emails_using_them(
    admin_client,
):
    layout = Layout.objects.create(key="brand", name="B", html="<header>B</header>{{ content }}")
    template = TemplateFactory(channel="email", notification_type__sample_data=SAMPLE)
    template.layout = layout
    template.save()
    content = {"subject": "s", "html": '<p><a href="https://shop.example.com/">x</a></p>'}
    template_version_save(template, content)
    utm = UtmParameters.objects.create(
        notification_type=template.notification_type, params={"utm_source": "clarion"}
    )
    template_version_save(template, content)  # compiled with both
    compiled = Template.objects.get(pk=template.pk).current_version.compiled["html"]
    assert "<header>B</header>" in compiled and "utm_source=clarion" in compiled

    admin_client.post(f"/admin/templates_app/layout/{layout.pk}/delete/", {"post": "yes"})
    admin_client.post(
        "/admin/templates_app/utmparameters/",
        {"action": "delete_selected", "_selected_action": [utm.pk], "post": "yes"},
    )

    compiled = Template.objects.get(pk=template.pk).current_version.compiled["html"]
    assert "<header>B</header>" not in compiled and "utm_source" not in compiled
    assert "https://shop.example.com/" in compiled


@pytest.mark.django_db
def test_turning_a_type_to_marketing_in_the_admin_gives_its_emails_the_footer(admin_client):
    template = TemplateFactory(
        channel="email",
        notification_type__sample_data=SAMPLE,
        notification_type__channels=["email"],
    )
    version, _ = template_version_save(template, {"subject": "s", "html": "<p>x</p>"})
    ntype = template.notification_type
    assert "unsubscribe_url" not in version.compiled["html"]

    response = admin_client.post(
        f"/admin/notifications/notificationtype/{ntype.pk}/change/",
        {
            "key": ntype.key,
            "name": ntype.name,
            "category": ntype.category_id,
            "traffic": "marketing",
            "channels": '["email"]',
            "fallbacks": "{}",
            "sample_data": '{"order_id": "A-1"}',
            "is_active": "on",
        },
    )

    assert response.status_code == 302, response.text[:2000]
    template.refresh_from_db()
    assert "links.unsubscribe_url" in template.current_version.compiled["html"]
