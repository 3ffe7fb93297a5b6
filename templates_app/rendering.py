"""Render a template version's compiled parts with an event's plain data (Jinja2 sandbox)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

# HTML parts are autoescaped; text, SMS and titles are not (they are not HTML).
_html_env = ImmutableSandboxedEnvironment(autoescape=True, undefined=StrictUndefined)
_text_env = ImmutableSandboxedEnvironment(autoescape=False, undefined=StrictUndefined)

HTML_PARTS = frozenset({"html"})


@lru_cache(maxsize=2048)
def _compiled(source: str, html: bool):
    return (_html_env if html else _text_env).from_string(source)


def render_parts(compiled: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """Render every string part of a compiled version; other values pass through."""
    rendered: dict[str, Any] = {}
    for part, source in compiled.items():
        if isinstance(source, str):
            rendered[part] = _compiled(source, part in HTML_PARTS).render(context)
        else:
            rendered[part] = source
    return rendered
