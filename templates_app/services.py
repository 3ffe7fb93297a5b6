"""Writes to templates: every content change becomes a new immutable version."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.db import transaction

from .models import Template, TemplateVersion


def content_checksum(content: dict[str, Any]) -> str:
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def compile_content(template: Template, content: dict[str, Any]) -> dict[str, Any]:
    """What sending renders: the authored parts, ready for the sandbox."""
    return dict(content)


@transaction.atomic
def template_version_save(
    template: Template, content: dict[str, Any], *, user=None
) -> tuple[TemplateVersion, bool]:
    """Make ``content`` the template's current version; a new one only if it changed."""
    # Lock the template so two saves never take the same version number.
    template = Template.objects.select_for_update().get(pk=template.pk)
    checksum = content_checksum(content)
    current = template.current_version
    if current is not None and current.checksum == checksum:
        return current, False
    last = template.versions.order_by("-number").values_list("number", flat=True).first()
    version = TemplateVersion.objects.create(
        template=template,
        number=(last or 0) + 1,
        content=content,
        compiled=compile_content(template, content),
        checksum=checksum,
        created_by=user,
    )
    template.current_version = version
    template.save(update_fields=["current_version", "updated_at"])
    return version, True
