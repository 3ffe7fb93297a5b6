"""Compile a template's authored parts once per version: layout, footer, inlined CSS, text, UTM."""

from __future__ import annotations

import re
import secrets
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlencode

import css_inline
from jinja2 import TemplateSyntaxError
from markupsafe import Markup

from notifications.models import Channel

from .models import Layout, Template, UtmParameters
from .sandbox import environment
from .utm import with_utm
from .validation import TemplateInvalid, used_keys

CONTENT_SLOT = re.compile(r"\{\{-?\s*content\s*-?\}\}")
JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
# Clarion's own links (preference center, unsubscribe) never get UTM parameters.
OWN_LINK = re.compile(r"\s*\{\{-?\s*links\.\w+\s*-?\}\}\s*")
HREF = re.compile(r'(<a\b[^>]*?\bhref=")([^"]*)(")', re.IGNORECASE)

# Used when no layout named "default" exists and the template names none.
BUILTIN_LAYOUT_HTML = """<!DOCTYPE html>
<html><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body { margin: 0; padding: 0; background: #f4f5f7; }
.clarion-body { max-width: 600px; margin: 0 auto; padding: 24px; background: #ffffff;
  font-family: Arial, Helvetica, sans-serif; font-size: 16px; line-height: 1.5; color: #1f2933; }
.clarion-footer { font-size: 12px; color: #52606d; }
</style></head>
<body><div class="clarion-body">{{ content }}</div></body></html>"""

# Marketing mail must say how to stop it and who sent it (CAN-SPAM, RFC 8058 pages).
MARKETING_FOOTER_HTML = (
    '<p class="clarion-footer"><a href="{{ links.preferences_url }}">Manage your preferences'
    '</a> &middot; <a href="{{ links.unsubscribe_url }}">Unsubscribe</a><br>'
    "{{ links.postal_address }}</p>"
)
MARKETING_FOOTER_TEXT = (
    "\n\n--\nManage your preferences: {{ links.preferences_url }}\n"
    "Unsubscribe: {{ links.unsubscribe_url }}\n{{ links.postal_address }}\n"
)

_INLINER = css_inline.CSSInliner(
    # Never fetch a stylesheet from the network while saving a template (SSRF, slowness).
    load_remote_stylesheets=False,
    keep_link_tags=False,
    # Media queries cannot be inlined; keep them in <style> for clients that honour them.
    keep_at_rules=True,
)


def compile_content(template: Template, content: dict[str, Any]) -> dict[str, Any]:
    """What sending renders: the authored parts, email wrapped, inlined and given a text part."""
    compiled = dict(content)
    if template.channel != Channel.EMAIL:
        return compiled
    layout = _layout(template)
    ntype = template.notification_type
    marketing = not ntype.is_transactional
    utm = _utm(ntype)
    # An html part is required now; a version saved before that may lack one and still
    # gets the layout and, for marketing, the footer.
    body = _wrap(layout.html if layout else BUILTIN_LAYOUT_HTML, content.get("html") or "")
    if marketing and not links_to_unsubscribe(body):
        body = _add_footer(body)
    try:
        inlined = inline_css(body)
    except css_inline.InlineError as exc:
        raise TemplateInvalid([f"html: the CSS cannot be inlined: {exc}"]) from exc
    compiled["html"] = add_utm(inlined, utm)
    if content.get("text"):
        text = content["text"]
        if layout and layout.text and CONTENT_SLOT.search(layout.text):
            text = _wrap(layout.text, text)
        derived = False
    else:
        text = html_to_text(compiled["html"])
        derived = True
    if marketing and not links_to_unsubscribe(text):
        text = text.rstrip() + MARKETING_FOOTER_TEXT
    compiled["text"] = text
    compiled["_compiled"] = {
        "layout": layout.key if layout else "builtin",
        "text_derived": derived,
        "utm": utm,
    }
    return compiled


def links_to_unsubscribe(source: str) -> bool:
    """Whether the template prints ``links.unsubscribe_url`` (or ``links["unsubscribe_url"]``).

    Read from the parsed template, not the text: a comment, a raw block or prose naming the
    link does not put one in the message. A template that does not parse gets the footer;
    saving refuses it anyway.
    """
    try:
        parsed = environment(html=False).parse(source)
    except TemplateSyntaxError:
        return False
    return any((root, key) == ("links", "unsubscribe_url") for root, key, _ in used_keys(parsed))


def templates_using(*, layout: Layout | None = None, ntype=None):
    """Email templates whose compiled form depends on a layout or a type's UTM parameters."""
    templates = Template.objects.filter(channel=Channel.EMAIL, current_version__isnull=False)
    if layout is not None:
        uses_default = layout.key == "default"
        templates = templates.filter(layout=layout) | (
            templates.filter(layout__isnull=True) if uses_default else templates.none()
        )
    if ntype is not None:
        templates = templates.filter(notification_type=ntype)
    return templates.select_related("notification_type", "current_version")


def _layout(template: Template) -> Layout | None:
    if template.layout_id:
        return template.layout
    return Layout.objects.filter(key="default").first()


def _utm(ntype) -> dict[str, str]:
    row = UtmParameters.objects.filter(notification_type=ntype).first()
    return dict(row.params) if row else {}


def _wrap(layout_source: str, content: str) -> str:
    # A function replacement: the content's backslashes must not be read as group references.
    return CONTENT_SLOT.sub(lambda _: content, layout_source, count=1)


def _add_footer(body: str) -> str:
    at = body.lower().rfind("</body>")
    if at == -1:
        return body + MARKETING_FOOTER_HTML
    return body[:at] + MARKETING_FOOTER_HTML + body[at:]


def _protect(source: str) -> tuple[str, dict[str, str]]:
    """Jinja tags become HTML comments, which every HTML parser keeps where they stand."""
    nonce = secrets.token_hex(4)
    saved: dict[str, str] = {}

    def hide(match: re.Match) -> str:
        marker = f"<!--cj{nonce}{len(saved)}-->"
        saved[marker] = match.group(0)
        return marker

    return JINJA.sub(hide, source), saved


def _restore(text: str, saved: dict[str, str]) -> str:
    for marker, original in saved.items():
        text = text.replace(marker, original)
    return text


def inline_css(source: str) -> str:
    """Move <style> rules into style="" attributes, keeping the Jinja tags intact."""
    protected, saved = _protect(source)
    return _restore(_INLINER.inline(protected), saved)


def add_utm(source: str, params: dict[str, str]) -> str:
    """Tag every http(s) link with ``params``; links built by Jinja are tagged when rendered."""
    if not params:
        return source
    query = urlencode(params)

    def tag(match: re.Match) -> str:
        href = match.group(2)
        if OWN_LINK.fullmatch(href):
            return match.group(0)
        if JINJA.search(href):
            href = f"{{% filter with_utm('{query}') %}}{href}{{% endfilter %}}"
        else:
            # The attribute value as authored, already HTML: not data from an event.
            href = str(with_utm(Markup(href), query))  # noqa: S704
        return match.group(1) + href + match.group(3)

    return HREF.sub(tag, source)


class _TextWriter(HTMLParser):
    """HTML to readable plain text: blocks on their own lines, links as "label (url)"."""

    BLOCKS = frozenset(
        "p div h1 h2 h3 h4 h5 h6 tr table ul ol blockquote section article header footer".split()
    )
    HIDDEN = frozenset({"style", "script", "head", "title"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.hidden = 0
        self.href: list[str | None] = []
        self.link_start: list[int] = []

    def handle_starttag(self, tag, attrs):
        if tag in self.HIDDEN:
            self.hidden += 1
        elif tag in self.BLOCKS:
            self.out.append("\n\n")
        elif tag == "br":
            self.out.append("\n")
        elif tag == "li":
            self.out.append("\n- ")
        elif tag in ("td", "th"):
            self.out.append(" ")
        elif tag == "a":
            self.href.append(dict(attrs).get("href"))
            self.link_start.append(len(self.out))

    def handle_endtag(self, tag):
        if tag in self.HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag in self.BLOCKS:
            self.out.append("\n\n")
        elif tag == "a" and self.href:
            href = self.href.pop()
            label = "".join(self.out[self.link_start.pop() :]).strip()
            if href and href != label and not href.startswith(("#", "mailto:")):
                self.out.append(f" ({href})")

    def handle_data(self, data):
        if not self.hidden:
            self.out.append(re.sub(r"\s+", " ", data))

    def handle_comment(self, data):
        if not self.hidden and data.startswith("cj"):  # a protected Jinja tag: keep it
            self.out.append(f"<!--{data}-->")

    def text(self) -> str:
        joined = "".join(self.out)
        lines = [line.strip() for line in joined.split("\n")]
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def html_to_text(source: str) -> str:
    """The text part of an email derived from its HTML template (Jinja tags carried over)."""
    protected, saved = _protect(source)
    writer = _TextWriter()
    writer.feed(protected)
    writer.close()
    return _restore(writer.text(), saved)
