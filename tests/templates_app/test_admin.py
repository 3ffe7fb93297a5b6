"""Template admin: authoring with validation, history, diff, restore, preview and test send."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from notifications.models import Delivery, FeedItem, Notification
from templates_app.models import Template, TemplateVersion
from templates_app.services import template_version_save
from tests.factories import NotificationTypeFactory, RecipientFactory, TemplateFactory

pytestmark = pytest.mark.django_db

SAMPLE = {"order_id": "A-1", "note": "<b>bold</b>"}
EMAIL = {"subject": "Order {{ data.order_id }}", "html": "<p>Order {{ data.order_id }}</p>"}


@pytest.fixture
def ntype():
    return NotificationTypeFactory(
        key="order-shipped", channels=["email", "sms", "in_app"], sample_data=SAMPLE
    )


@pytest.fixture
def email_template(ntype):
    template = TemplateFactory(notification_type=ntype, channel="email")
    template_version_save(template, EMAIL)
    template.refresh_from_db()
    return template


def form_data(ntype, channel="email", **parts):
    data = {"notification_type": ntype.pk, "channel": channel, "locale": "en", "layout": ""}
    data.update({f"versions-{k}": v for k, v in {"TOTAL_FORMS": 0, "INITIAL_FORMS": 0}.items()})
    data.update(parts)
    return data


def test_a_syntax_error_is_shown_with_its_line_and_nothing_is_saved(admin_client, ntype):
    response = admin_client.post(
        "/admin/templates_app/template/add/",
        form_data(ntype, subject="Hi", html="<p>ok</p>\n<p>{{ data.order_id </p>"),
    )

    assert response.status_code == 200
    assert "html, line 2:" in response.text
    assert not Template.objects.exists() and not TemplateVersion.objects.exists()


def test_unknown_roots_are_refused_and_unknown_data_keys_warned(admin_client, ntype):
    refused = admin_client.post(
        "/admin/templates_app/template/add/",
        form_data(ntype, subject="{{ settings.SECRET_KEY }}", html="<p>x</p>"),
    )
    assert "unknown variable &#x27;settings&#x27;" in refused.text
    assert not Template.objects.exists()

    saved = admin_client.post(
        "/admin/templates_app/template/add/",
        form_data(ntype, subject="Order {{ data.ordr_id | default('?') }}", html="<p>x</p>"),
        follow=True,
    )
    assert "data.ordr_id is not in the type&#x27;s sample data" in saved.text
    assert Template.objects.get().current_version.number == 1


def test_sms_length_is_shown_with_its_encoding_and_segments(admin_client, ntype):
    response = admin_client.post(
        "/admin/templates_app/template/add/",
        form_data(ntype, channel="sms", text="Commande {{ data.order_id }} expédiée ✓"),
        follow=True,
    )

    assert "SMS with the sample data: 23 characters, UCS-2, 1 segment" in response.text
    assert "UCS-2 because of ✓" in response.text


def test_editing_makes_a_version_and_history_diff_and_restore_work(admin_client, email_template):
    change = f"/admin/templates_app/template/{email_template.pk}/change/"
    edited = form_data(
        email_template.notification_type, subject="Shipped {{ data.order_id }}", html=EMAIL["html"]
    )
    admin_client.post(change, edited, follow=True)
    admin_client.post(change, edited, follow=True)  # unchanged: no new version
    email_template.refresh_from_db()
    first, second = email_template.versions.order_by("number")
    assert email_template.current_version == second and second.number == 2
    assert "diff" in admin_client.get(change).text

    diff = admin_client.get(
        f"/admin/templates_app/template/{email_template.pk}/diff/?b={second.id}"
    )
    assert '<table class="diff"' in diff.text and "<h2>subject</h2>" in diff.text
    shown = re.sub(r"<[^>]+>", "", diff.text).replace("&nbsp;", " ")
    assert "Order {{ data.order_id }}" in shown and "Shipped {{ data.order_id }}" in shown
    assert "<h2>html</h2>" not in diff.text  # unchanged parts are not listed

    restore = f"/admin/templates_app/template/{email_template.pk}/restore/{first.id}/"
    assert admin_client.get(restore).status_code == 200
    assert email_template.versions.count() == 2  # GET changes nothing
    admin_client.post(restore)
    email_template.refresh_from_db()
    assert email_template.current_version.number == 3
    assert email_template.current_version.content == first.content


def test_preview_shows_every_channel_and_sandboxes_the_html(admin_client, ntype, email_template):
    template_version_save(
        TemplateFactory(notification_type=ntype, channel="sms"), {"text": "SMS {{ data.order_id }}"}
    )
    template_version_save(
        TemplateFactory(notification_type=ntype, channel="in_app"),
        {"title": "T {{ data.order_id }}", "body": "B {{ data.note }}"},
    )

    response = admin_client.get(f"/admin/templates_app/template/{email_template.pk}/preview/")

    assert response.status_code == 200
    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert '<iframe sandbox="" referrerpolicy="no-referrer"' in response.text
    assert 'srcdoc="&lt;!DOCTYPE html&gt;' in response.text
    assert "SMS A-1" in response.text and "7 characters, GSM-7, 1 segment" in response.text
    assert "T A-1" in response.text and "B &lt;b&gt;bold&lt;/b&gt;" in response.text


def test_preview_with_a_chosen_recipient_and_locale(admin_client, ntype, email_template):
    fr = TemplateFactory(notification_type=ntype, channel="email", locale="fr")
    template_version_save(fr, {"subject": "Commande {{ recipient.external_id }}", "html": "<p>"})
    RecipientFactory(external_id="zoe", locale="fr-CA")

    response = admin_client.get(
        f"/admin/templates_app/template/{email_template.pk}/preview/?recipient=zoe"
    )

    assert "Commande zoe" in response.text  # fr-CA fell back to fr
    assert "(fr v1)" in response.text


def test_preview_for_a_recipient_without_a_locale_picks_what_sending_picks(admin_client, ntype):
    from notifications.messages import MessageBuilder

    template_version_save(TemplateFactory(notification_type=ntype), EMAIL)
    fr = TemplateFactory(notification_type=ntype, channel="email", locale="fr")
    template_version_save(fr, {"subject": "Commande", "html": "<p>"})
    recipient = RecipientFactory(external_id="nolocale", locale="")
    notification = Notification.objects.create(type=ntype, data=SAMPLE)
    delivery = Delivery(notification=notification, recipient=recipient, channel="email")

    response = admin_client.get(
        f"/admin/templates_app/template/{fr.pk}/preview/?recipient=nolocale"
    )

    sent = MessageBuilder().version_for(delivery)
    assert sent.template.locale == "en"
    assert f"(en v{sent.number})" in response.text and "(fr v1)" not in response.text


def staff_client(django_user_model, *perms):
    user = django_user_model.objects.create_user("staff", "staff@example.com", is_staff=True)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize("can_view_recipients", [False, True])
def test_previewing_as_a_recipient_needs_permission_to_view_recipients(
    django_user_model, can_view_recipients
):
    ntype = NotificationTypeFactory(channels=["email"], traffic="marketing", sample_data=SAMPLE)
    template = TemplateFactory(notification_type=ntype)
    html = "<p>{{ recipient.email }} {{ links.unsubscribe_url }} {{ links.preferences_url }}</p>"
    template_version_save(template, {"subject": "Sale", "html": html})
    RecipientFactory(external_id="zoe", email="zoe@customer.example")
    perms = ["templates_app.view_template"]
    if can_view_recipients:
        perms.append("notifications.view_recipient")
    client = staff_client(django_user_model, *perms)

    response = client.get(f"/admin/templates_app/template/{template.pk}/preview/?recipient=zoe")

    assert response.status_code == 200
    signed = re.findall(r"/(?:unsubscribe|preferences)/([^/\s\"&]+)/", response.text)
    assert signed
    if can_view_recipients:
        assert "zoe@customer.example" in response.text
        assert "sample-token" not in signed
    else:
        assert "zoe@customer.example" not in response.text
        assert set(signed) == {"sample-token"}
        assert "permission to view recipients" in response.text
        assert 'name="recipient"' not in response.text


def test_send_a_test_email_to_ones_own_address(
    admin_client, admin_user, email_template, smtp_server
):
    response = admin_client.post(
        f"/admin/templates_app/template/{email_template.pk}/test-send/", follow=True
    )

    [message] = smtp_server.inbox.wait_for(1)
    assert message["To"] == admin_user.email
    assert message["Subject"] == "Order A-1"
    delivery = Delivery.objects.get()
    assert delivery.is_test and delivery.status == Delivery.Status.SENT
    assert delivery.template_version == email_template.current_version
    assert f"Test email delivery #{delivery.id}: sent" in response.text


def test_preview_and_test_send_show_a_version_saved_by_another_web_process_at_once(
    admin_client, email_template, smtp_server, settings
):
    settings.TEMPLATE_CACHE_SECONDS = 60
    preview = f"/admin/templates_app/template/{email_template.pk}/preview/"
    assert "Order A-1" in admin_client.get(preview).text  # this process now trusts v1

    def saved_elsewhere(number: int, subject: str) -> TemplateVersion:
        content = {**EMAIL, "subject": subject}
        version = TemplateVersion.objects.create(
            template=email_template, number=number, content=content, compiled=content
        )
        # Saved through another gunicorn process: no signal reaches this one.
        Template.objects.filter(pk=email_template.pk).update(current_version=version)
        return version

    second = saved_elsewhere(2, "Shipped {{ data.order_id }}")
    admin_client.post(f"/admin/templates_app/template/{email_template.pk}/test-send/")
    [message] = smtp_server.inbox.wait_for(1)
    assert message["Subject"] == "Shipped A-1"
    assert Delivery.objects.get().template_version == second

    saved_elsewhere(3, "Delivered {{ data.order_id }}")
    assert "Delivered A-1" in admin_client.get(preview).text


def test_send_a_test_in_app_message_to_ones_own_feed(admin_client, admin_user, ntype):
    template = TemplateFactory(notification_type=ntype, channel="in_app")
    template_version_save(template, {"title": "T {{ data.order_id }}", "body": "b"})

    admin_client.post(f"/admin/templates_app/template/{template.pk}/test-send/")

    item = FeedItem.objects.get()
    assert item.title == "T A-1" and item.recipient.external_id == f"staff-test-{admin_user.pk}"
    assert item.delivery.is_test

    admin_client.post(f"/admin/templates_app/template/{template.pk}/test-send/")
    assert FeedItem.objects.count() == 2  # the second test reuses the staff recipient


@pytest.mark.parametrize("real_delivery", [True, False])
def test_a_test_send_never_overwrites_a_customer_with_the_staff_test_id(
    admin_client, admin_user, ntype, real_delivery
):
    template = TemplateFactory(notification_type=ntype, channel="in_app")
    template_version_save(template, {"title": "T", "body": "b"})
    customer = RecipientFactory(
        external_id=f"staff-test-{admin_user.pk}", email="ann@customer.example", locale="de"
    )
    if real_delivery:
        notification = Notification.objects.create(type=ntype, data=SAMPLE)
        Delivery.objects.create(
            notification=notification, recipient=customer, channel="email", traffic="transactional"
        )

    response = admin_client.post(
        f"/admin/templates_app/template/{template.pk}/test-send/", follow=True
    )

    assert f"The recipient staff-test-{admin_user.pk} is a real one" in response.text
    customer.refresh_from_db()
    assert (customer.email, customer.locale) == ("ann@customer.example", "de")
    assert not Delivery.objects.filter(is_test=True).exists()


@pytest.mark.parametrize("phone", ["", "call me", "+1" + "5" * 40])
def test_sms_test_send_without_a_real_number_is_refused(admin_client, ntype, phone):
    template = TemplateFactory(notification_type=ntype, channel="sms")
    template_version_save(template, {"text": "x"})

    response = admin_client.post(
        f"/admin/templates_app/template/{template.pk}/test-send/", {"phone": phone}, follow=True
    )

    assert "Give your own phone number" in response.text
    assert not Delivery.objects.exists()


def test_admin_pages_render(admin_client, email_template):
    for url in [
        "/admin/templates_app/template/",
        "/admin/templates_app/template/add/",
        f"/admin/templates_app/template/{email_template.pk}/change/",
        f"/admin/templates_app/template/{email_template.pk}/test-send/",
        f"/admin/templates_app/template/{email_template.pk}/diff/",
        "/admin/templates_app/layout/add/",
        "/admin/templates_app/utmparameters/add/",
    ]:
        assert admin_client.get(url).status_code == 200, url


@pytest.mark.parametrize(
    "query",
    [
        "preview/?version=abc",
        "diff/?b=abc",
        "diff/?a=x1",
        "preview/?version=999999",
        "preview/?version=²",
        "diff/?b=²",
        "diff/?a=１",
        "diff/?b=" + "9" * 5000,
    ],
)
def test_a_version_that_is_not_one_of_the_template_is_not_found(
    admin_client, email_template, query
):
    response = admin_client.get(f"/admin/templates_app/template/{email_template.pk}/{query}")
    assert response.status_code == 404


def test_utm_parameters_must_be_utm_names(admin_client, email_template):
    response = admin_client.post(
        "/admin/templates_app/utmparameters/add/",
        {"notification_type": email_template.notification_type_id, "params": '{"x": 1}'},
    )

    assert "Map utm_* names to text" in response.text
    admin_client.post(
        "/admin/templates_app/utmparameters/add/",
        {
            "notification_type": email_template.notification_type_id,
            "params": '{"utm_source": "news"}',
        },
    )
    email_template.refresh_from_db()
    assert email_template.current_version.number == 2
    assert email_template.current_version.compiled["_compiled"]["utm"] == {"utm_source": "news"}


def test_marketing_sms_preview_shows_the_opt_out_wording_sending_adds(admin_client):
    ntype = NotificationTypeFactory(channels=["sms"], traffic="marketing", sample_data=SAMPLE)
    template = TemplateFactory(notification_type=ntype, channel="sms")
    template_version_save(template, {"text": "Sale on {{ data.order_id }}"})

    response = admin_client.get(f"/admin/templates_app/template/{template.pk}/preview/")

    assert "Sale on A-1 Reply STOP to opt out." in response.text
    assert "34 characters, GSM-7, 1 segment" in response.text


def test_preview_shows_a_template_on_a_fallback_channel_of_its_type(admin_client):
    ntype = NotificationTypeFactory(
        channels=["email"], fallbacks={"email": ["sms"]}, sample_data=SAMPLE
    )
    email = TemplateFactory(notification_type=ntype, channel="email")
    template_version_save(email, EMAIL)
    sms = TemplateFactory(notification_type=ntype, channel="sms")
    template_version_save(sms, {"text": "SMS {{ data.order_id }}"})

    for template in (sms, email):
        response = admin_client.get(f"/admin/templates_app/template/{template.pk}/preview/")
        assert 'data-channel="sms"' in response.text and "SMS A-1" in response.text
        assert 'data-channel="email"' in response.text


def test_send_a_test_sms_to_the_number_given_through_twilio(
    admin_client, admin_user, ntype, settings, http_server
):
    from tests.support.twilio import use_fake_twilio

    twilio = use_fake_twilio(settings, http_server)
    template = TemplateFactory(notification_type=ntype, channel="sms")
    template_version_save(template, {"text": "Order {{ data.order_id }}"})

    admin_client.post(
        f"/admin/templates_app/template/{template.pk}/test-send/", {"phone": "+15550001111"}
    )

    assert [(m["To"], m["Body"]) for m in twilio.messages()] == [("+15550001111", "Order A-1")]
    delivery = Delivery.objects.get()
    assert delivery.is_test and delivery.status == Delivery.Status.SENT
    assert delivery.recipient.external_id == f"staff-test-{admin_user.pk}"
