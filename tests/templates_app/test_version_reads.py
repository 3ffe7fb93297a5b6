"""A send batch reads each version's content once, and which versions are current once per
TEMPLATE_CACHE_SECONDS, or at once after a change saved in the same process."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from notifications.messages import MessageBuilder
from notifications.models import Delivery, Notification
from templates_app import selection
from templates_app.models import Template, TemplateVersion
from tests.factories import RecipientFactory, add_template, notification_type_with_templates

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def cold_process(settings):
    settings.TEMPLATE_CACHE_SECONDS = 60
    selection._read.clear()
    selection._current.clear()
    yield
    selection._current.clear()


def read(ntype, channel="sms"):
    with CaptureQueriesContext(connection) as captured:
        versions = selection.versions_for(ntype.id, channel)
    return versions, len(captured)


def texts(versions) -> dict[str, str]:
    return {locale: version.content["text"] for locale, version in versions.items()}


def newer_version(template: Template, text: str) -> TemplateVersion:
    number = template.versions.count() + 1
    return TemplateVersion.objects.create(
        template=template,
        number=number,
        content={"text": text},
        compiled={"text": text},
        checksum=str(number),
    )


def test_versions_are_read_once_and_which_are_current_once_within_the_cache_time():
    ntype = notification_type_with_templates(channels=("sms",))
    add_template(ntype, "sms", {"text": "Bonjour"}, locale="fr")
    selection._current.clear()

    first, first_queries = read(ntype)
    second, second_queries = read(ntype)

    assert texts(second) == {"en": first["en"].content["text"], "fr": "Bonjour"}
    assert (first_queries, second_queries) == (2, 0)


def test_which_version_is_current_is_read_again_once_its_time_is_up(settings, monkeypatch):
    settings.TEMPLATE_CACHE_SECONDS = 2
    ntype = notification_type_with_templates(channels=("sms",))
    template = ntype.templates.get(channel="sms", locale="en")
    newer = newer_version(template, "v2")
    read(ntype)
    # Published on another node: no signal reaches this process.
    Template.objects.filter(pk=template.pk).update(current_version=newer)
    now = selection.time.monotonic()

    monkeypatch.setattr(selection.time, "monotonic", lambda: now + 1)
    assert texts(read(ntype)[0]) != {"en": "v2"}
    monkeypatch.setattr(selection.time, "monotonic", lambda: now + 3)
    assert read(ntype) == ({"en": newer}, 2)  # which is current, then the new content


def test_a_version_published_in_this_process_is_used_at_once():
    ntype = notification_type_with_templates(channels=("sms",))
    read(ntype)
    template = ntype.templates.get(channel="sms", locale="en")
    template.current_version = newer_version(template, "v2")
    template.save(update_fields=["current_version"])

    assert texts(read(ntype)[0]) == {"en": "v2"}


def test_a_template_added_or_deleted_in_this_process_counts_at_once():
    ntype = notification_type_with_templates(channels=("sms",))
    read(ntype)

    added = add_template(ntype, "sms", {"text": "Bonjour"}, locale="fr")
    assert set(read(ntype)[0]) == {"en", "fr"}
    added.template.delete()
    assert set(read(ntype)[0]) == {"en"}


def test_a_deleted_current_version_is_not_sent():
    ntype = notification_type_with_templates(channels=("sms",))
    read(ntype)

    # Its template's current_version is set to none by the database cascade, not by a save.
    TemplateVersion.objects.filter(template__notification_type=ntype).delete()

    assert read(ntype) == ({}, 1)


def test_a_type_without_templates_has_no_versions():
    ntype = notification_type_with_templates(channels=("sms",))

    assert read(ntype, "email") == ({}, 1)


def test_no_template_is_never_trusted_so_one_published_on_another_node_is_found_at_once():
    ntype = notification_type_with_templates(channels=("sms",))
    template = ntype.templates.get(channel="sms", locale="en")
    Template.objects.filter(pk=template.pk).update(current_version=None)
    assert read(ntype) == ({}, 1)

    # Published on another node: no signal reaches this process, and no time passes.
    Template.objects.filter(pk=template.pk).update(current_version=template.versions.get())

    assert set(read(ntype)[0]) == {"en"}


def test_a_fresh_read_is_not_kept_for_other_reads():
    ntype = notification_type_with_templates(channels=("sms",))
    selection.versions_for(ntype.id, "sms", fresh=True)

    assert read(ntype)[1] == 1  # which is current, read again


def test_a_save_forgets_what_was_read_again_when_it_commits(django_capture_on_commit_callbacks):
    ntype = notification_type_with_templates(channels=("sms",))
    template = ntype.templates.get(channel="sms", locale="en")
    old = template.current_version_id
    with django_capture_on_commit_callbacks(execute=True):
        template.current_version = newer_version(template, "v2")
        template.save(update_fields=["current_version"])
        # Another thread reads between the save and its commit, and sees the old version.
        selection._current[(ntype.id, "sms")] = (float("inf"), {"en": old})

    assert texts(read(ntype)[0]) == {"en": "v2"}


def test_a_test_send_batched_after_a_real_send_still_reads_which_version_is_current():
    ntype = notification_type_with_templates(channels=("sms",))
    template = ntype.templates.get(channel="sms", locale="en")
    notification = Notification.objects.create(type=ntype, data={})
    recipient = RecipientFactory()
    builder = MessageBuilder()
    real = Delivery(notification=notification, recipient=recipient, channel="sms")
    test = Delivery(notification=notification, recipient=recipient, channel="sms", is_test=True)
    builder.version_for(real)

    # Saved on another web process a moment ago: only a fresh read sees it.
    newer = newer_version(template, "v2")
    Template.objects.filter(pk=template.pk).update(current_version=newer)

    assert builder.version_for(test) == newer
    assert builder.version_for(real) != newer
