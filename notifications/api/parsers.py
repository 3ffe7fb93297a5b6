"""The API's JSON parser: refuses what PostgreSQL could not store, before any view runs.

A NUL character (``\\u0000``) in a string or key, or a number too large for a float
(``1e400`` parses as infinity), is valid JSON that PostgreSQL's json and text types refuse;
left to the database, either was a server error halfway through a request. Nesting deep
enough to exhaust Python's recursion is refused as well.
"""

from __future__ import annotations

import json
import math

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

NUL = "\x00"


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range")
    return value


def _constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _has_nul(value) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if NUL in item:
                return True
        elif isinstance(item, dict):
            if any(NUL in key for key in item):
                return True
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


class StrictJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = stream.read().decode(encoding)
            data = json.loads(text, parse_float=_finite, parse_constant=_constant)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply.") from None
        except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            raise ParseError(f"JSON parse error - {exc}") from None
        # An escaped NUL is the only way one gets in: no walk for the bodies without one.
        if "\\u0000" in text and _has_nul(data):
            raise ParseError("JSON parse error - a string contains a NUL character (\\u0000).")
        # A lone surrogate (\ud800) is no character: no column can store it either.
        if "\\ud" in text.lower():
            try:
                json.dumps(data, ensure_ascii=False).encode()
            except UnicodeEncodeError:
                raise ParseError("JSON parse error - a string holds a lone surrogate.") from None
        return data
