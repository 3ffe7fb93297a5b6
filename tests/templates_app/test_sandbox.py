"""The sandbox: injection payloads, loop work, output size, autoescaping and header lines."""

from __future__ import annotations

import time
import tracemalloc

import jinja2
import pytest

from templates_app import sandbox
from templates_app.rendering import render_parts
from templates_app.sandbox import RenderLimitError

CONTEXT = {
    "data": {"name": "Ada", "items": ["a", "b"], "html": "<b>x</b>"},
    "recipient": {"external_id": "u1"},
    "links": {"preferences_url": "https://example.com/p"},
    "notification": {"id": "n1", "type": "t"},
}
# The bound for a stopped render: the 0.5 s limit plus room for a loaded machine. Unchecked,
# each runaway template below would run for a minute or more.
PROMPTLY = 2.0
SECRET_MARKERS = ("SECRET", "django-insecure", "<class", "&lt;class", " object at 0x", "function")

# Each payload with the exception rendering raises: none may print a secret or a class repr.
PAYLOADS = [
    ("{{ settings.SECRET_KEY }}", jinja2.UndefinedError),
    ("{{ request.META }}", jinja2.UndefinedError),
    ("{{ config.items() }}", jinja2.UndefinedError),
    ("{{ ''.__class__.__mro__ }}", jinja2.exceptions.SecurityError),
    ("{{ ''.__class__.__mro__[1].__subclasses__() }}", jinja2.exceptions.SecurityError),
    ("{{ cycler.__init__.__globals__ }}", jinja2.exceptions.SecurityError),
    ("{{ self }}", jinja2.TemplateSyntaxError),
    ("{{ self._TemplateReference__context }}", jinja2.TemplateSyntaxError),
    ("{% include '/etc/passwd' %}", jinja2.TemplateNotFound),
    ("{% include '../../config/settings.py' %}", jinja2.TemplateNotFound),
    ("{% extends '/etc/hostname' %}", jinja2.TemplateNotFound),
    ("{{ range }}", jinja2.exceptions.SecurityError),
    ("{{ range|string }}", jinja2.exceptions.SecurityError),
    ("{{ 'x' ~ dict }}", jinja2.exceptions.SecurityError),
    ("{{ data.name.upper }}", jinja2.exceptions.SecurityError),
    ("{{ [range] }}", jinja2.exceptions.SecurityError),
    ("{{ lipsum.__globals__ }}", jinja2.UndefinedError),
    ("{{ namespace() }}", jinja2.UndefinedError),
]


@pytest.mark.django_db
@pytest.mark.parametrize("channel_part", ["html", "text"])
@pytest.mark.parametrize(("payload", "error"), PAYLOADS, ids=[p for p, _ in PAYLOADS])
def test_injection_payload_is_refused_without_revealing_anything(payload, error, channel_part):
    with pytest.raises(error) as caught:
        render_parts({channel_part: payload}, CONTEXT)

    message = str(caught.value)
    assert not any(marker in message for marker in ("SECRET_KEY =", "django-insecure", "0x"))


def test_a_billion_iteration_loop_is_stopped_within_a_second():
    source = "{% for i in range(100000) %}{% for j in range(10000) %}{% endfor %}"
    source += "{% endfor %}"
    started = time.monotonic()

    with pytest.raises(RenderLimitError, match="loop iterations|took more than"):
        render_parts({"text": source}, CONTEXT)

    assert time.monotonic() - started < PROMPTLY


def test_a_loop_over_a_built_list_is_counted_too():
    source = "{% set a = range(100000)|list %}"
    source += "{% for i in a %}{% for j in a %}{% endfor %}{% endfor %}"
    started = time.monotonic()

    with pytest.raises(RenderLimitError):
        render_parts({"text": source}, CONTEXT)

    assert time.monotonic() - started < PROMPTLY


def test_slow_loop_bodies_are_stopped_by_the_clock(settings):
    settings.TEMPLATE_MAX_LOOP_ITERATIONS = 10**9
    source = "{% for i in range(100000) %}{% for j in range(100000) %}"
    source += "{% if j * 3 == -1 %}never{% endif %}{% endfor %}{% endfor %}"
    started = time.monotonic()

    with pytest.raises(RenderLimitError, match="took more than 0.5 s"):
        render_parts({"text": source}, CONTEXT)

    assert time.monotonic() - started < PROMPTLY


def test_ten_megabytes_of_output_is_cut_at_the_limit():
    source = "{% for i in range(10) %}{{ 'x' * 1000000 }}{% endfor %}"

    with pytest.raises(RenderLimitError, match="output cut: longer than 1,000,000") as caught:
        render_parts({"html": source}, CONTEXT)

    assert len(caught.value.partial) == 1_000_000 + len("\n[cut]")
    assert caught.value.partial.endswith("[cut]")


@pytest.mark.parametrize(
    "source",
    [
        "{{ 'x' * 10000000 }}",
        "{{ 'x'|center(1000000000) }}",
        "{{ '%999999999s' % 'x' }}",
        "{{ '{:>999999999}'.format('x') }}",
        "{{ '%999999999s'|format('x') }}",
        "{{ ('a' * 999999)|replace('a', 'bb' * 999) }}",
        "{{ 9 ** 100000 }}",
        "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
    ],
)
def test_expanding_operations_are_refused_before_they_allocate(source):
    with pytest.raises(RenderLimitError):
        render_parts({"text": source}, CONTEXT)


def test_oversized_source_is_refused(settings):
    settings.TEMPLATE_MAX_SOURCE_CHARS = 1000

    with pytest.raises(jinja2.TemplateSyntaxError, match="longer than 1,000 characters"):
        render_parts({"text": "x" * 1001}, CONTEXT)


def test_html_is_autoescaped_and_text_parts_are_not():
    parts = {
        "html": "<p>{{ data.html }}</p>",
        "text": "{{ data.html }}",
        "subject": "{{ data.html }}",
        "title": "{{ data.html }}",
    }

    rendered = render_parts(parts, CONTEXT)

    assert rendered["html"] == "<p>&lt;b&gt;x&lt;/b&gt;</p>"
    assert rendered["text"] == rendered["subject"] == rendered["title"] == "<b>x</b>"


@pytest.mark.parametrize(
    "value", ["Hi\r\nBcc: evil@example.com", "Hi\nBcc: evil@example.com", "Hi\u2028Bcc: x"]
)
def test_line_breaks_in_a_subject_become_spaces(value):
    rendered = render_parts({"subject": "Re: {{ data.s }}"}, {**CONTEXT, "data": {"s": value}})

    assert "\r" not in rendered["subject"] and "\n" not in rendered["subject"]
    assert rendered["subject"].startswith("Re: Hi ")


def test_event_data_keys_win_over_dict_methods():
    assert render_parts({"text": "{{ data.items|join(',') }}"}, CONTEXT) == {"text": "a,b"}


def test_none_prints_as_nothing_and_plain_data_prints():
    context = {**CONTEXT, "data": {"a": None, "n": 3, "l": [1, 2]}}

    assert render_parts({"text": "[{{ data.a }}]{{ data.n }}{{ data.l }}"}, context) == {
        "text": "[]3[1, 2]"
    }


def test_a_context_with_objects_is_refused():
    with pytest.raises(jinja2.exceptions.SecurityError, match="plain JSON"):
        render_parts({"text": "hi"}, {"data": {"when": object()}})


@pytest.mark.django_db
def test_each_version_is_compiled_once_per_process_however_many_messages(monkeypatch):
    from templates_app import sandbox
    from tests.factories import add_template, notification_type_with_templates

    ntype = notification_type_with_templates(channels=("sms",))
    version = add_template(ntype, "email", {"subject": "S {{ data.n }}", "html": "<p>{{ data.n }}"})
    compiled = []
    original = sandbox.MessageSandbox.compile

    def counting(self, source, *args, **kwargs):
        compiled.append(source)
        return original(self, source, *args, **kwargs)

    monkeypatch.setattr(sandbox.MessageSandbox, "compile", counting)
    from templates_app.rendering import render_version

    subjects = [
        render_version(version, {**CONTEXT, "data": {"n": n}})["subject"] for n in range(500)
    ]

    assert subjects[0] == "S 0" and subjects[-1] == "S 499"
    assert len(compiled) == 2  # subject and html, once each


def test_a_chain_of_slow_filters_is_stopped_by_the_clock():
    # Unchecked, 2,000 sorts of 200,000 items would take about a minute. A loop keeps the
    # compile short, so the time measured is the render's.
    source = (
        "{% set big = (range(100000)|list) * 2 %}"
        "{% for _ in range(2000) %}{{ big|sort|length }}{% endfor %}"
    )
    started = time.monotonic()

    with pytest.raises(RenderLimitError, match="took more than"):
        render_parts({"text": source}, CONTEXT)

    assert time.monotonic() - started < PROMPTLY


@pytest.mark.parametrize(
    "source", ["{{ 1" + "|abs" * 1000 + " }}", "{{ " + "(" * 500 + "1" + ")" * 500 + " }}"]
)
def test_a_template_nested_too_deeply_is_a_template_error(source):
    with pytest.raises(jinja2.TemplateSyntaxError, match="nested too deeply"):
        render_parts({"text": source}, CONTEXT)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ 5000000|round|int }}", "5000000"),
        ("{{ 123456789|string }}", "123456789"),
        ("{{ data.n|default(20000000) }}", "20000000"),
        ("{{ 'Call 5551234567 about {}'.format('A-1') }}", "Call 5551234567 about A-1"),
        ("{{ 'pi 3.1415926 %s' % 'x' }}", "pi 3.1415926 x"),
        ("{{ '%.2f'|format(12345678.5) }}", "12345678.50"),
        ("{{ 'a'|center(5) }}", "  a  "),
        ("{{ 'a\nb'|indent(2, first=true) }}", "  a\n  b"),
    ],
)
def test_large_numbers_and_digits_in_text_are_not_mistaken_for_expanders(source, expected):
    assert render_parts({"text": source}, {**CONTEXT, "data": {}}) == {"text": expected}


@pytest.mark.parametrize(
    "source",
    [
        "{{ '{:{}}'.format('x', 999999999) }}",
        "{{ ('a\\n' * 1000)|indent(2000) }}",
        "{{ '%.9999999f' % 1 }}",
        "{{ '%*s' % (999999999, 'x') }}",
    ],
)
def test_widths_taken_from_arguments_or_lines_are_refused(source):
    with pytest.raises(RenderLimitError):
        render_parts({"text": source}, CONTEXT)


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("{{ 1 / data.zero }}", "ZeroDivisionError"),
        ("{{ 1 + data.text }}", "TypeError"),
        ("{{ data.text.index('y') }}", "ValueError"),
    ],
)
def test_a_python_error_in_a_template_is_a_template_error(source, error):
    context = {**CONTEXT, "data": {"zero": 0, "text": "a"}}

    with pytest.raises(jinja2.TemplateRuntimeError, match=error):
        render_parts({"text": source}, context)


def _doubled_by_tilde(times: int) -> str:
    return "{% set a = 'x' * 500 %}" + "{% set a = a ~ a %}" * times + "{{ a|length }}"


def test_tilde_concatenation_is_refused_like_plus():
    with pytest.raises(RenderLimitError, match="than 1,000,000 characters"):
        render_parts({"text": _doubled_by_tilde(12)}, CONTEXT)


def test_tilde_keeps_html_escaping_and_prints_plain_values():
    parts = {"html": "{{ data.html|safe ~ '<' }}", "text": "{{ data.html|safe ~ 1 ~ [2] }}"}

    assert render_parts(parts, CONTEXT) == {"html": "<b>x</b>&lt;", "text": "<b>x</b>1[2]"}


@pytest.mark.parametrize(
    "source",
    [
        "{{ ('x'.encode() * 20000000)|length }}",
        "{{ 'x'.encode().center(20000000)|length }}",
        "{{ ('x'.encode() * 1000).replace('x'.encode(), 'y'.encode() * 100000)|length }}",
        "{{ (1).to_bytes(20000000, 'big')|length }}",
    ],
)
def test_bytes_are_size_checked_like_text(source):
    with pytest.raises(RenderLimitError):
        render_parts({"text": source}, CONTEXT)


@pytest.mark.parametrize(
    "source",
    [
        "{{ ((((10 ** 64) ** 64) ** 64) ** 8) > 1 }}",
        "{% set a = 10 ** 64 %}" + "{% set a = a * a %}" * 16 + "{{ a > 1 }}",
    ],
)
def test_whole_number_maths_is_refused_before_it_runs(source):
    # Refused by the size check ("10,000 digits"), not by the clock after the work.
    with pytest.raises(RenderLimitError, match="10,000 digits"):
        render_parts({"text": source}, CONTEXT)


def _peak_bytes_while_refused(source: str) -> int:
    tracemalloc.start()
    try:
        with pytest.raises(RenderLimitError):
            render_parts({"text": source}, CONTEXT)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    "source",
    [
        "{{ (['x' * 100000] * 200)|join }}",
        "{{ ([{'a': 'x' * 100000}] * 200)|join(attribute='a') }}",
        "{{ ('y' * 10000).join('x' * 2000) }}",
        "{{ ('y' * 10000).join(['x'] * 2000) }}",
        "{{ ('x' * 2000).translate({120: 'y' * 10000}) }}",
        "{{ ('x ' * 100000)|wordwrap(1, wrapstring='y' * 200) }}",
        "{{ ([1] * 100000)|tojson(indent=200) }}",
        "{{ ([[1] * 1000] * 3000)|sum(start=[]) }}",
        "{{ '%(a)20000000s' % {'a': 1} }}",
        "{{ '%(a)20000000s'|format(a=1) }}",
        "{{ [1]|batch(5000000, 0)|first }}",
    ],
)
def test_oversized_results_are_refused_before_they_are_built(source):
    # Each would build 20 MB or more before the size of its result was checked.
    assert _peak_bytes_while_refused(source) < 8_000_000


def test_sum_of_lists_takes_one_pass():
    # sum() copies the list built so far once per item: 50,000 items took seconds.
    started = time.monotonic()

    assert render_parts({"text": "{{ ([[1]] * 50000)|sum(start=[])|length }}"}, CONTEXT) == {
        "text": "50000"
    }
    assert time.monotonic() - started < PROMPTLY


def test_cutting_a_huge_word_into_tiny_lines_is_refused():
    # textwrap copies the rest of the word once per line: this took about five seconds.
    started = time.monotonic()

    with pytest.raises(RenderLimitError, match="wordwrap"):
        render_parts({"text": "{{ ('x' * 400000)|wordwrap(1, wrapstring='') }}"}, CONTEXT)

    assert time.monotonic() - started < PROMPTLY


@pytest.mark.parametrize(
    "source", ["{{ [1]|slice(3000000)|list|length }}", "{{ [1]|slice(1000000)|list|length }}"]
)
def test_slices_beyond_the_items_are_counted_as_loop_steps(source):
    started = time.monotonic()

    with pytest.raises(RenderLimitError, match="loop limit|template stopped"):
        render_parts({"text": source}, CONTEXT)

    assert time.monotonic() - started < PROMPTLY


@pytest.mark.parametrize("rows", ["batch(1)", "slice(600)"])
def test_a_loop_over_batches_or_slices_spends_one_step_a_row(settings, rows):
    settings.TEMPLATE_MAX_LOOP_ITERATIONS = 1000
    source = f"{{% for row in range(600)|{rows} %}}{{% endfor %}}done"

    assert render_parts({"text": source}, CONTEXT) == {"text": "done"}


def test_operators_alone_are_stopped_by_the_clock(settings):
    # No loop and no call: only the operators read the clock. Each copies a megabyte.
    settings.TEMPLATE_MAX_RENDER_SECONDS = 0.02
    source = "{% set a = 'x' * 999999 %}" + "{% set b = a + 'y' %}" * 3000

    with pytest.raises(RenderLimitError, match="took more than 0.02 s"):
        render_parts({"text": source}, CONTEXT)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ [1, 2, 3]|batch(2, 0)|list }}", "[[1, 2], [3, 0]]"),
        ("{{ [1, 2, 3]|slice(2)|list }}", "[[1, 2], [3]]"),
        ("{{ [[1], [2]]|sum(start=[]) }}", "[1, 2]"),
        ("{{ [(1,), (2,)]|sum(start=()) }}", "(1, 2)"),
        ("{{ [1, 2]|sum(start=3) }}", "6"),
        ("{{ [{'n': 'a'}, {'n': 'b'}]|join('-', attribute='n') }}", "a-b"),
        ("{{ [1, 'b']|join(', ') }}", "1, b"),
        ("{{ ', '.join(['a', 'b']) }}", "a, b"),
        ("{{ '-'.join('ab') }}", "a-b"),
        ("{{ 'abc'.translate({97: 'xy', 98: none}) }}", "xyc"),
        ("{{ 'a b c'|wordwrap(1, wrapstring='<br>') }}", "a<br>b<br>c"),
        ("{{ ('x' * 300 ~ ' y')|wordwrap(100)|length }}", "304"),
        ("{{ {'a': 1}|tojson(indent=2) }}", '{\n  "a": 1\n}'),
        ("{{ '%(a)3s' % {'a': 1} }}", "  1"),
        ("{{ 2 ** 64 * 3 }}", str(2**64 * 3)),
        ("{{ 'x'.encode()|length }}", "1"),
    ],
)
def test_bounded_operations_still_work_on_ordinary_values(source, expected):
    assert render_parts({"text": source}, {**CONTEXT, "data": {}}) == {"text": expected}


@pytest.mark.parametrize(
    ("text", "reveals"),
    [
        ("<class 'dict'>", True),
        ("a &lt;function f at 1&gt;", True),
        ("&#60;module 'os'", True),
        ("<Thing object at 0x7f3a9c>", True),
        ("plain object at 0xbeef", True),
        ("<p>Hello <b>class</b> of 2026</p>", False),
        ("<classy>", False),
        ("an object at 0xZZ, no address", False),
        ("object at 0x1 with no space before", False),
    ],
)
def test_the_last_check_on_the_output_finds_any_internal_repr(text, reveals):
    assert sandbox.reveals_internals(text) is reveals
