"""Optional event data: testable in templates, but a misspelt variable never prints blank."""

from __future__ import annotations

import jinja2
import pytest

from templates_app.rendering import render_parts


def test_a_missing_variable_can_be_tested_and_looped_over():
    parts = {"text": "Shipped{% if data.carrier %} with {{ data.carrier }}{% endif %}."}
    parts["html"] = "<ul>{% for line in data.lines %}<li>{{ line }}</li>{% endfor %}</ul>"

    rendered = render_parts(parts, {"data": {}})

    assert rendered == {"text": "Shipped.", "html": "<ul></ul>"}


def test_printing_a_missing_variable_fails_the_message():
    with pytest.raises(jinja2.UndefinedError, match="ordr_id"):
        render_parts({"text": "Order {{ data.ordr_id }}"}, {"data": {"order_id": 1}})


def test_default_fills_a_missing_variable():
    assert render_parts({"text": "{{ data.x | default('-') }}"}, {"data": {}}) == {"text": "-"}
