"""The catalog carries layouts, locales and UTM; a re-sync versions only what changed."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from templates_app.catalog import CatalogError, sync
from templates_app.models import Template, TemplateVersion
from templates_app.rendering import render_version
from templates_app.selection import pick, versions_for
from templates_app.validation import sample_context

DEMO = Path(__file__).resolve().parents[2] / "demo" / "catalog.yaml"

pytestmark = pytest.mark.django_db


@pytest.fixture
def document():
    return yaml.safe_load(DEMO.read_text())


def email(key: str, locale: str) -> Template:
    return Template.objects.get(notification_type__key=key, channel="email", locale=locale)


def test_demo_email_is_wrapped_in_the_default_layout_with_inlined_css_and_utm(document):
    sync(document)

    deals = render_version(
        email("weekly-deals", "en").current_version,
        sample_context(
            {"headline": "Sale", "discount": 30, "url": "https://shop.example.com/deals"}
        ),
    )

    assert '<div class="wrap" style="max-width: 600px;' in deals["html"]
    [href] = re.findall(r'href="(https://shop\.example\.com/deals[^"]*)"', deals["html"])
    assert sorted(href.split("?")[1].split("&amp;")) == [
        "utm_campaign=weekly-deals",
        "utm_medium=email",
        "utm_source=clarion",
    ]
    assert '/unsubscribe/sample-token/"' in deals["html"]  # own links carry no UTM
    assert "See the deals (https://shop.example.com/deals?utm_" in deals["text"]


def test_a_changed_layout_versions_its_emails_and_nothing_else(document):
    sync(document)
    before = dict(Template.objects.values_list("id", "current_version__number"))
    document["layouts"][0]["html"] = document["layouts"][0]["html"].replace("#ffffff", "#fafafa")

    result = sync(document)

    after = dict(Template.objects.values_list("id", "current_version__number"))
    bumped = {t.channel for t in Template.objects.all() if after[t.id] != before[t.id]}
    assert bumped == {"email"}
    assert result.updated["templates"] == Template.objects.filter(channel="email").count()
    assert "#fafafa" in email("order-shipped", "en").current_version.compiled["html"]


def test_a_changed_layout_or_utm_versions_the_emails_made_in_the_admin_too(document):
    from templates_app.services import template_version_save

    sync(document)
    shipped = email("order-shipped", "en")
    added = Template.objects.create(
        notification_type=shipped.notification_type, channel="email", locale="de"
    )
    template_version_save(added, {"subject": "Paket", "html": "<p>{{ data.order_id }}</p>"})
    document["layouts"][0]["html"] = document["layouts"][0]["html"].replace("#ffffff", "#fafafa")
    deals = next(t for t in document["types"] if t["key"] == "weekly-deals")
    deals["utm"] = {**deals["utm"], "utm_term": "autumn"}

    result = sync(document)

    added.refresh_from_db()
    assert "#fafafa" in added.current_version.compiled["html"]
    assert added.current_version.number == 2
    assert "utm_term=autumn" in email("weekly-deals", "en").current_version.compiled["html"]
    assert result.updated["templates"] == Template.objects.filter(channel="email").count()


def test_an_unchanged_resync_makes_no_version(document):
    sync(document)
    count = TemplateVersion.objects.count()

    sync(copy.deepcopy(document))

    assert TemplateVersion.objects.count() == count


def test_a_new_locale_is_added_and_picked_by_fallback(document):
    document["types"][0]["templates"]["sms"]["fr-CA"] = {"text": "Colis {{ data.order_id }}"}
    sync(document)
    shipped = Template.objects.get(
        notification_type__key="order-shipped", channel="sms", locale="fr-CA"
    ).notification_type

    versions = versions_for(shipped.id, "sms")

    assert pick(versions, "fr-CA").template.locale == "fr-CA"
    assert pick(versions, "fr-FR").template.locale == "fr"
    assert pick(versions, "de").template.locale == "en"
    # Recipients' locales come from other systems, spelt their way.
    assert pick(versions, "FR").template.locale == "fr"
    assert pick(versions, "fr_ca").template.locale == "fr-CA"


def test_a_template_syntax_error_stops_the_whole_sync_with_its_place(document):
    document["types"][0]["templates"]["sms"]["en"]["text"] = "Hi {{ data.order_id"

    with pytest.raises(CatalogError) as caught:
        sync(document)

    assert any("templates.sms.en.text, line 1:" in p for p in caught.value.problems)
    assert not Template.objects.exists()


def test_every_template_that_fails_to_save_is_reported_at_once(document):
    document["types"][0]["templates"]["sms"]["en"]["text"] = "{{ 'x' * 2000000 }}"
    document["types"][1]["templates"]["sms"]["en"]["text"] = "{{ 'y' * 2000000 }}"

    with pytest.raises(CatalogError) as caught:
        sync(document)

    places = {p.split(":")[0] for p in caught.value.problems}
    assert {f"types ({t['key']}).templates.sms.en" for t in document["types"][:2]} <= places
    assert not Template.objects.exists()


def test_bad_utm_is_refused(document):
    document["types"][0]["utm"] = {"source": ["x"]}

    with pytest.raises(CatalogError, match="utm: must map utm_"):
        sync(document)


def _types(document, **fields):
    document["types"][0].update(fields)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda d: d.update({True: 1}), "unknown top-level keys: True"),
        (lambda d: _types(d, sample_data=[1, 2]), "sample_data: must be a mapping"),
        (lambda d: _types(d, category=["orders"]), "unknown category ['orders']"),
        (lambda d: _types(d, layout=["default"]), "unknown layout ['default']"),
        (lambda d: _types(d, name=None), ".name: must be text"),
        (lambda d: _types(d, name="x" * 201), ".name: at most 200 characters"),
        (lambda d: _types(d, is_active="nope"), "is_active: must be true or false"),
        (lambda d: d["categories"][0].update(description=None), ".description: must be text"),
        (lambda d: d["layouts"][0].update(text=None), ".text: must be text"),
        (
            lambda d: d["layouts"][0].update(html='<div class="content"></div>'),
            "must place {{ content }}",
        ),
        (lambda d: d["layouts"][0].update(html="{{ content }}{% if %}"), "layouts[0].html"),
        (
            lambda d: d["types"][0]["templates"]["email"].update({False: {"subject": "x"}}),
            "a locale is a quoted code",
        ),
        (
            lambda d: d["types"][0]["templates"]["email"].update({"x" * 17: {"subject": "x"}}),
            "a locale is a quoted code",
        ),
    ],
)
def test_a_catalog_with_a_mistake_is_refused_with_it_listed_never_a_traceback(
    document, change, says
):
    change(document)
    with pytest.raises(CatalogError) as caught:
        sync(document)
    assert any(says in problem for problem in caught.value.problems), caught.value.problems
    assert not Template.objects.exists()
