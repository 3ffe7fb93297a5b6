"""What a notification type looks like on each channel, rendered for the admin preview."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jinja2

from notifications.messages import recipient_context
from notifications.models import NotificationType, Recipient
from preferences.links import links_for, with_sms_opt_out

from .models import TemplateVersion
from .rendering import render_version
from .sandbox import RenderLimitError
from .selection import pick, versions_for
from .validation import SmsLength, sample_context, sms_length


@dataclass
class ChannelPreview:
    channel: str
    version: TemplateVersion | None
    parts: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    sms: SmsLength | None = None


def preview_context(ntype: NotificationType, recipient: Recipient | None) -> dict[str, Any]:
    """Sample data, with a real recipient's fields and links when one is chosen.

    Those links are signed and work: pass a recipient only for staff who may view recipients.
    """
    context = sample_context(dict(ntype.sample_data or {}))
    context["notification"] = {"id": "preview", "type": ntype.key}
    if recipient is not None:
        context["recipient"] = recipient_context(recipient)
        context["links"] = links_for(recipient, ntype)
    return context


def preview_type(
    ntype: NotificationType,
    locale: str,
    own_channel: str,
    *,
    recipient: Recipient | None = None,
    version: TemplateVersion | None = None,
) -> list[ChannelPreview]:
    """Every channel of the type in ``locale`` (with fallback), and ``own_channel``, that of
    the template previewed; ``version``, one of that template's, replaces its current one.
    """
    context = preview_context(ntype, recipient)
    # Sending appends the opt-out wording to marketing SMS in the person's language.
    sms_recipient = recipient or Recipient(locale=locale)
    previews = []
    for channel in preview_channels(ntype, own_channel):
        chosen = pick(versions_for(ntype.id, channel, fresh=True), locale)
        if version is not None and channel == own_channel:
            chosen = version
        preview = _render(channel, chosen, context)
        if channel == "sms" and isinstance(preview.parts.get("text"), str):
            preview.parts["text"] = with_sms_opt_out(preview.parts["text"], sms_recipient, ntype)
            preview.sms = sms_length(preview.parts["text"])
        previews.append(preview)
    return previews


def preview_channels(ntype: NotificationType, own_channel: str) -> list[str]:
    """The type's channels, those it falls back to, and the template's own: once each.

    A fallback channel's template is sent when the first channel fails, and the template
    previewed is shown even on a channel its type no longer lists.
    """
    fallbacks = [c for chain in (ntype.fallbacks or {}).values() for c in chain]
    return list(dict.fromkeys([*ntype.channels, *fallbacks, own_channel]))


def _render(channel: str, version: TemplateVersion | None, context: dict) -> ChannelPreview:
    preview = ChannelPreview(channel, version)
    if version is None:
        preview.error = "no template for this channel and locale" if channel != "webhook" else ""
        return preview
    try:
        preview.parts = render_version(version, context)
    except RenderLimitError as exc:
        preview.error = str(exc)
        preview.parts = {"text": exc.partial}
    except jinja2.TemplateError as exc:
        preview.error = f"{type(exc).__name__}: {exc}"
    return preview
