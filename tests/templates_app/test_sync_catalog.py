"""sync_catalog: catalog as code, idempotent, all-or-nothing, and the demo catalog renders."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml
from django.core.management import CommandError, call_command

from notifications.messages import recipient_context
from notifications.models import Category, NotificationType
from preferences.links import sample_links
from templates_app.catalog import sync
from templates_app.models import Template, TemplateVersion
from templates_app.rendering import render_parts
from tests.factories import RecipientFactory

DEMO = Path(__file__).resolve().parents[2] / "demo" / "catalog.yaml"

pytestmark = pytest.mark.django_db


def demo() -> dict:
    return yaml.safe_load(DEMO.read_text())


def test_demo_catalog_creates_types_with_templates_for_every_channel_and_locale():
    call_command("sync_catalog", str(DEMO))

    shipped = NotificationType.objects.get(key="order-shipped")
    deals = NotificationType.objects.get(key="weekly-deals")
    assert shipped.traffic == "transactional" and deals.traffic == "marketing"
    for ntype in (shipped, deals):
        channels = set(
            Template.objects.filter(notification_type=ntype).values_list("channel", flat=True)
        )
        assert channels == {"email", "sms", "in_app", "webhook"}
    assert Template.objects.filter(notification_type=shipped, locale="fr").exists()
    assert not Template.objects.filter(current_version__isnull=True).exists()


def test_resync_of_an_unchanged_catalog_creates_no_new_version(capsys):
    call_command("sync_catalog", str(DEMO))
    versions = TemplateVersion.objects.count()

    call_command("sync_catalog", str(DEMO))

    assert TemplateVersion.objects.count() == versions
    assert "0 created, 0 updated" in capsys.readouterr().out


def test_changed_content_adds_one_version_to_that_template_only():
    document = demo()
    sync(document)
    versions = TemplateVersion.objects.count()
    document["types"][0]["templates"]["sms"]["en"]["text"] = "Shipped: {{ data.order_id }}"

    result = sync(document)

    assert TemplateVersion.objects.count() == versions + 1
    assert result.updated["templates"] == 1
    template = Template.objects.get(
        notification_type__key="order-shipped", channel="sms", locale="en"
    )
    assert template.current_version.number == 2
    assert template.current_version.content["text"] == "Shipped: {{ data.order_id }}"
    assert template.versions.get(number=1).content["text"] != "Shipped: {{ data.order_id }}"


def test_type_fields_are_updated_in_place():
    document = demo()
    sync(document)
    document["types"][0]["channels"] = ["email"]

    sync(document)

    assert NotificationType.objects.get(key="order-shipped").channels == ["email"]
    assert NotificationType.objects.filter(key="order-shipped").count() == 1


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda d: d["types"][0].update(traffic="urgent"), "traffic: must be one of"),
        (lambda d: d["types"][0].update(channels=["fax"]), "unknown channel 'fax'"),
        (lambda d: d["types"][0].update(category="nope"), "unknown category 'nope'"),
        (lambda d: d["types"][1].update(fallbacks={"sms": ["sms"]}), "may not repeat"),
        (lambda d: d["types"][0]["templates"]["email"]["en"].pop("subject"), "missing parts"),
        (lambda d: d["types"][0]["templates"]["sms"]["en"].update(html="x"), "unknown parts"),
        (lambda d: d["types"][0]["templates"].pop("sms"), "no sms template"),
        (lambda d: d["types"].append(copy.deepcopy(d["types"][0])), "key appears twice"),
        (
            lambda d: d["types"][0]["templates"]["sms"].update(
                {"EN": d["types"][0]["templates"]["sms"]["en"]}
            ),
            "the same locale as",
        ),
        (
            lambda d: d["types"][0]["templates"]["sms"].update({"en us": {"text": "x"}}),
            "A locale is a language code",
        ),
        (lambda d: d["categories"][0].update(key="c" * 101), "at most 100 characters"),
        (lambda d: d["types"][0].update(key="t" * 101), "at most 100 characters"),
        (lambda d: d["layouts"][0].update(key="l" * 101), "at most 100 characters"),
        (lambda d: d["types"][0].update(key="order shipped!"), "letters, digits"),
    ],
)
def test_a_bad_catalog_is_refused_whole_with_the_place_of_the_problem(tmp_path, edit, problem):
    document = demo()
    edit(document)
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True))

    with pytest.raises(CommandError) as error:
        call_command("sync_catalog", str(path))

    assert problem in str(error.value)
    assert "nothing changed" in str(error.value)
    assert not Category.objects.exists()
    assert not NotificationType.objects.exists()
    assert not TemplateVersion.objects.exists()


def test_a_file_that_is_not_yaml_is_refused(tmp_path):
    path = tmp_path / "catalog.yaml"
    path.write_text("types: [unclosed")

    with pytest.raises(CommandError, match="not valid YAML"):
        call_command("sync_catalog", str(path))


def test_every_demo_template_renders_with_its_sample_data():
    sync(demo())
    recipient = recipient_context(RecipientFactory.build(external_id="42"))
    versions = TemplateVersion.objects.select_related("template__notification_type")

    for version in versions:
        ntype = version.template.notification_type
        context = {
            "data": ntype.sample_data,
            "recipient": recipient,
            "links": sample_links(),
            "notification": {"id": "00000000-0000-0000-0000-000000000000", "type": ntype.key},
        }
        rendered = render_parts(version.compiled, context)
        assert all(value.strip() for key, value in rendered.items() if key != "link"), version
        if "payload" in rendered:
            assert json.loads(rendered["payload"])["event"]
