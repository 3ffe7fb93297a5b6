"""Writes to templates: every content change becomes a new immutable version."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.db import transaction

from .compiling import compile_content
from .models import Template, TemplateVersion
from .validation import check_or_raise


def content_checksum(content: dict[str, Any]) -> str:
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@transaction.atomic
def template_version_save(
    template: Template, content: dict[str, Any], *, user=None
) -> tuple[TemplateVersion, bool]:
    """Make ``content`` the template's current version; a new one only if it changed.

    Raises TemplateInvalid (nothing saved) when the content has errors (validation.py).
    """
    check_or_raise(template.channel, content, template.notification_type.sample_data)
    # Lock the template so two saves never take the same version number.
    template = Template.objects.select_for_update().get(pk=template.pk)
    compiled = compile_content(template, content)
    # The compiled form counts too: a layout, footer or UTM change makes a new version, so a
    # version always says exactly what its deliveries were sent.
    checksum = content_checksum({"content": content, "compiled": compiled})
    current = template.current_version
    if current is not None and current.checksum == checksum:
        return current, False
    last = template.versions.order_by("-number").values_list("number", flat=True).first()
    version = TemplateVersion.objects.create(
        template=template,
        number=(last or 0) + 1,
        content=content,
        compiled=compiled,
        checksum=checksum,
        created_by=user,
    )
    template.current_version = version
    template.save(update_fields=["current_version", "updated_at"])
    return version, True


def templates_recompile(templates, *, user=None) -> int:
    """Compile the current content of ``templates`` again (after a layout or UTM change).

    Each whose compiled form changed gets a new version; returns how many did.
    """
    changed = 0
    for template in templates:
        _, created = template_version_save(template, template.current_version.content, user=user)
        changed += created
    return changed
