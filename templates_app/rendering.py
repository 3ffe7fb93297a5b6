"""Render a template version's compiled parts with an event's plain data (Jinja2 sandbox)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment


class TestableUndefined(StrictUndefined):
    """A missing variable fails loudly when printed, but may be tested and looped over.

    ``{% if data.carrier %}`` is how authors write optional parts; printing a misspelt
    ``{{ data.ordr_id }}`` must still fail the message rather than send a blank.
    """

    __slots__ = ()

    def __bool__(self) -> bool:
        return False

    def __iter__(self):
        return iter(())

    def __len__(self) -> int:
        return 0


# HTML parts are autoescaped; text, SMS and titles are not (they are not HTML).
_html_env = ImmutableSandboxedEnvironment(autoescape=True, undefined=TestableUndefined)
_text_env = ImmutableSandboxedEnvironment(autoescape=False, undefined=TestableUndefined)

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
