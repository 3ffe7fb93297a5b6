"""Render a template version's compiled parts with an event's plain data (Jinja2 sandbox).

Each part is compiled once per process and kept by (version id, part), so a campaign to
100,000 people compiles each template once per worker and renders each message in one call.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from jinja2.exceptions import SecurityError

from .sandbox import RenderLimitError, TestableUndefined, environment, plain, render_bounded

__all__ = ["RenderLimitError", "TestableUndefined", "render_parts", "render_version"]

# HTML parts are autoescaped; text, SMS, titles and payloads are not (they are not HTML).
HTML_PARTS = frozenset({"html"})
# Parts that become one header line: a CR or LF there could start a new header.
HEADER_PARTS = frozenset({"subject", "title"})
_BLANK_LINES = re.compile(r"\n\s*\n(?:\s*\n)+")
_LINE_BREAKS = re.compile(r"[\r\n\x0b\x0c\x1c-\x1e\x85\u2028\u2029]+")


@lru_cache(maxsize=4096)
def _compiled_source(source: str, html: bool):
    return environment(html).from_string(source)


_by_version: dict[tuple, Any] = {}
_VERSION_CACHE_SIZE = 4096


def _compiled_part(version_key: tuple | None, part: str, source: str):
    if version_key is None:
        return _compiled_source(source, part in HTML_PARTS)
    key = (*version_key, part)
    template = _by_version.get(key)
    if template is None:
        # Versions are immutable: id and checksum name the source (the checksum guards
        # against ids reused after a database reset, in trial mode or tests).
        if len(_by_version) >= _VERSION_CACHE_SIZE:
            _by_version.clear()
        template = _by_version[key] = environment(part in HTML_PARTS).from_string(source)
    return template


def one_line(text: str) -> str:
    """A header value: line breaks of any kind become a space, so no header can be added."""
    return _LINE_BREAKS.sub(" ", text).strip()


def render_parts(
    compiled: dict[str, Any], context: dict[str, Any], *, version_key: tuple | None = None
) -> dict[str, Any]:
    """Render every string part of a compiled version; other values pass through."""
    if not plain(context):
        # Model instances, settings or functions would give a template a way out.
        raise SecurityError("template context must be plain JSON data")
    rendered: dict[str, Any] = {}
    for part, source in compiled.items():
        if part.startswith("_"):  # compile notes (e.g. what was derived), not message parts
            continue
        if not isinstance(source, str):
            rendered[part] = source
            continue
        text = render_bounded(_compiled_part(version_key, part, source), context)
        rendered[part] = one_line(text) if part in HEADER_PARTS else text
    if compiled.get("_compiled", {}).get("text_derived") and "text" in rendered:
        # Loops and ifs in the HTML leave runs of blank lines in the derived text.
        rendered["text"] = _BLANK_LINES.sub("\n\n", rendered["text"])
    return rendered


def render_version(version, context: dict[str, Any]) -> dict[str, Any]:
    """Render a TemplateVersion, compiling each part once per process."""
    key = (version.id, version.checksum)
    return render_parts(version.compiled or version.content, context, version_key=key)
