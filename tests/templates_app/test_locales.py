"""One spelling per locale: two spellings of one locale never make two templates."""

from __future__ import annotations

import pytest
from django.db import IntegrityError

from templates_app.locales import canonical_locale
from templates_app.models import Template
from templates_app.selection import locale_chain
from tests.factories import NotificationTypeFactory, TemplateFactory
from tests.templates_app.test_admin import form_data


@pytest.mark.parametrize(
    ("written", "spelled"),
    [
        ("en", "en"),
        ("FR_ca", "fr-CA"),
        (" fr-ca ", "fr-CA"),
        ("zh_hant_tw", "zh-Hant-TW"),
        ("es-419", "es-419"),
    ],
)
def test_a_locale_is_stored_in_its_conventional_spelling(written, spelled):
    assert canonical_locale(written) == spelled
    assert locale_chain(spelled)[0] == locale_chain(written)[0]


@pytest.mark.django_db
def test_a_template_saved_or_looked_up_in_any_spelling_is_the_same_one():
    ntype = NotificationTypeFactory()
    template = TemplateFactory(notification_type=ntype, channel="email", locale="fr_ca")

    assert template.locale == "fr-CA"
    assert Template.objects.get(notification_type=ntype, locale="FR-CA") == template
    with pytest.raises(IntegrityError):
        TemplateFactory(notification_type=ntype, channel="email", locale="fr-CA")


@pytest.mark.django_db
def test_the_admin_refuses_a_second_spelling_of_a_templates_locale(admin_client):
    ntype = NotificationTypeFactory(key="order-shipped", channels=["email"])
    TemplateFactory(notification_type=ntype, channel="email", locale="fr-CA")

    response = admin_client.post(
        "/admin/templates_app/template/add/",
        form_data(ntype, locale="fr_ca", subject="Hi", html="<p>ok</p>"),
    )

    assert response.status_code == 200
    assert "already exists" in response.text
    assert Template.objects.filter(notification_type=ntype).count() == 1


@pytest.mark.django_db
def test_the_admin_refuses_what_is_not_a_locale(admin_client):
    ntype = NotificationTypeFactory(key="order-shipped", channels=["email"])

    response = admin_client.post(
        "/admin/templates_app/template/add/",
        form_data(ntype, locale="english please", subject="Hi", html="<p>ok</p>"),
    )

    assert response.status_code == 200
    assert "A locale is a language code" in response.text
    assert not Template.objects.exists()
