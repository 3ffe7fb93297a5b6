"""A send batch reads which template versions are current, and each version's content once."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from templates_app import selection
from templates_app.models import TemplateVersion
from tests.factories import add_template, notification_type_with_templates

pytestmark = pytest.mark.django_db


def read(ntype, channel="sms"):
    with CaptureQueriesContext(connection) as captured:
        versions = selection.versions_for(ntype.id, channel)
    return versions, len(captured)


def test_a_version_read_once_is_not_read_again():
    ntype = notification_type_with_templates(channels=("sms",))
    add_template(ntype, "sms", {"text": "Bonjour"}, locale="fr")
    selection._read.clear()

    first, first_queries = read(ntype)
    second, second_queries = read(ntype)

    assert {k: v.content["text"] for k, v in second.items()} == {
        "en": first["en"].content["text"],
        "fr": "Bonjour",
    }
    assert (first_queries, second_queries) == (2, 1)


def test_a_newly_published_version_is_used_at_once():
    ntype = notification_type_with_templates(channels=("sms",))
    read(ntype)
    template = ntype.templates.get(channel="sms", locale="en")
    newer = TemplateVersion.objects.create(
        template=template, number=2, content={"text": "v2"}, compiled={"text": "v2"}, checksum="2"
    )
    template.current_version = newer
    template.save(update_fields=["current_version"])

    assert read(ntype)[0]["en"].content == {"text": "v2"}


def test_a_type_without_templates_has_no_versions():
    ntype = notification_type_with_templates(channels=("sms",))

    assert read(ntype, "email") == ({}, 1)
