"""UTM parameters on links: the ``with_utm`` filter compiled email uses around dynamic hrefs."""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.conf import settings
from markupsafe import Markup, escape


def with_utm(value: Any, query: str) -> Any:
    """Add the query's keys an http(s) URL does not carry already.

    Clarion's own links (preference center, unsubscribe) are left alone. In HTML the value
    arrives escaped (Markup) and leaves escaped; in text it stays plain.
    """
    is_html = isinstance(value, Markup)
    url = (html.unescape(str(value)) if is_html else str(value)).strip()
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and not url.startswith(settings.PUBLIC_BASE_URL):
        existing = parse_qsl(parts.query, keep_blank_values=True)
        keys = {key for key, _ in existing}
        added = [(k, v) for k, v in parse_qsl(query) if k not in keys]
        url = urlunsplit(parts._replace(query=urlencode(existing + added)))
    return escape(url) if is_html else url
