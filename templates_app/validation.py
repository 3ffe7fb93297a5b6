"""Checks on a template's content before it is saved: syntax, variables, trial render, SMS size."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import jinja2
from jinja2 import meta, nodes

from notifications.models import Channel

from .sandbox import CONTEXT_ROOTS, GLOBALS, RenderLimitError, environment, render_bounded

HTML_PARTS = frozenset({"html"})
# What each root of the context holds (notifications/messages.py, preferences/links.py).
KNOWN_KEYS = {
    "recipient": {"external_id", "email", "phone", "locale", "timezone", "attributes"},
    "links": {"preferences_url", "unsubscribe_url", "postal_address"},
    "notification": {"id", "type"},
}
CHANNEL_PARTS = {
    Channel.EMAIL: ({"subject", "html"}, {"text"}),
    Channel.SMS: ({"text"}, set()),
    Channel.IN_APP: ({"title", "body"}, {"link"}),
    Channel.WEBHOOK: (set(), {"payload"}),
}
# Parts that must say something (an in-app item may be a title alone).
NOT_BLANK = {
    Channel.EMAIL: {"subject", "html"},
    Channel.SMS: {"text"},
    Channel.IN_APP: {"title"},
}

# GSM 03.38: the basic set is one septet, the extension set two (escape + char).
GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = set("^{}\\[~]|€\f")


class TemplateInvalid(ValueError):
    """Content that cannot be saved; ``problems`` lists each with its part and line."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass
class SmsLength:
    characters: int
    encoding: str  # "GSM-7" or "UCS-2"
    segments: int
    non_gsm: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = (
            f"{self.characters} characters, {self.encoding}, {self.segments} "
            f"segment{'s' if self.segments != 1 else ''}"
        )
        if self.non_gsm:
            text += f" (UCS-2 because of {' '.join(self.non_gsm[:5])})"
        return text


@dataclass
class Report:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    sms: SmsLength | None = None

    @property
    def ok(self) -> bool:
        return not self.errors


def sms_length(text: str) -> SmsLength:
    """Segments as carriers count them: 160/153 septets in GSM-7, 70/67 UTF-16 units in UCS-2."""
    non_gsm = sorted({c for c in text if c not in GSM7_BASIC and c not in GSM7_EXTENDED})
    if not non_gsm:
        units = sum(2 if c in GSM7_EXTENDED else 1 for c in text)
        single, multi, encoding = 160, 153, "GSM-7"
    else:
        units = len(text.encode("utf-16-le")) // 2
        single, multi, encoding = 70, 67, "UCS-2"
    segments = 1 if units <= single else math.ceil(units / multi)
    return SmsLength(len(text), encoding, segments, non_gsm)


def syntax_problems(content: dict[str, Any]) -> list[str]:
    """Syntax errors and forbidden names, each as "part, line N: message"."""
    problems = []
    for part, source in content.items():
        if not isinstance(source, str):
            continue
        env = environment(part in HTML_PARTS)
        try:
            env.compile(source)  # every limit and syntax rule, as rendering will apply them
            ast = env.parse(source)
        except jinja2.TemplateSyntaxError as exc:
            problems.append(f"{part}, line {exc.lineno}: {exc.message}")
            continue
        for name in sorted(meta.find_undeclared_variables(ast) - CONTEXT_ROOTS - set(GLOBALS)):
            line = next((n.lineno for n in ast.find_all(nodes.Name) if n.name == name), ast.lineno)
            problems.append(
                f"{part}, line {line}: unknown variable '{name}'; templates can use "
                f"{', '.join(sorted(CONTEXT_ROOTS))}"
            )
    return problems


def used_keys(ast: nodes.Template) -> list[tuple[str, str, int]]:
    """(root, key, line) for every ``root.key`` or ``root['key']`` the template reads."""
    used = []
    for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
        target = node.node
        if isinstance(target, nodes.Name) and target.name in CONTEXT_ROOTS:
            key = node.attr if isinstance(node, nodes.Getattr) else None
            if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
                key = node.arg.value
            if isinstance(key, str):
                used.append((target.name, key, node.lineno))
    return used


def validate_content(
    channel: str, content: dict[str, Any], sample_data: dict[str, Any] | None = None
) -> Report:
    """Everything wrong (errors, which block saving) or doubtful (warnings) with the content."""
    report = Report()
    required, optional = CHANNEL_PARTS.get(channel, (set(), set()))
    missing = required - set(content)
    extra = set(content) - required - optional
    if missing:
        report.errors.append(f"missing parts: {', '.join(sorted(missing))}")
    if extra:
        report.errors.append(f"unknown parts: {', '.join(sorted(extra))}")
    not_text = sorted(p for p, v in content.items() if not isinstance(v, str))
    if not_text:
        report.errors.append(f"parts must be text: {', '.join(not_text)}")
    blank = sorted(
        p
        for p in NOT_BLANK.get(channel, ())
        if isinstance(content.get(p), str) and not content[p].strip()
    )
    if blank:
        report.errors.append(f"empty parts: {', '.join(blank)}")
    report.errors.extend(syntax_problems(content))
    if report.errors:
        return report
    sample_data = sample_data or {}
    context = sample_context(sample_data)
    for part, source in content.items():
        env = environment(part in HTML_PARTS)
        ast = env.parse(source)
        for root, key, line in used_keys(ast):
            known = set(sample_data) if root == "data" else KNOWN_KEYS.get(root, set())
            if key not in known:
                where = "the type's sample data" if root == "data" else f"{root}"
                report.warnings.append(f"{part}, line {line}: {root}.{key} is not in {where}")
        try:
            rendered = render_bounded(env.from_string(source), context)
        except RenderLimitError as exc:
            report.errors.append(f"{part}: {exc}")
            continue
        except jinja2.UndefinedError as exc:
            report.warnings.append(f"{part}: with the sample data: {exc.message}")
            continue
        except (jinja2.TemplateError, ArithmeticError, TypeError, ValueError) as exc:
            report.errors.append(f"{part}: {type(exc).__name__}: {exc}")
            continue
        if channel == Channel.SMS and part == "text":
            report.sms = sms_length(rendered)
    return report


def sample_context(sample_data: dict[str, Any], recipient: dict[str, Any] | None = None) -> dict:
    """The context previews and checks render with: sample data and placeholder links."""
    from preferences.links import sample_links

    return {
        "data": sample_data,
        "recipient": recipient
        or {
            "external_id": "sample-recipient",
            "email": "sample@example.com",
            "phone": "+15550100",
            "locale": "en",
            "timezone": "UTC",
            "attributes": {},
        },
        "links": sample_links(),
        "notification": {"id": "00000000-0000-0000-0000-000000000000", "type": "sample"},
    }


def check_or_raise(channel: str, content: dict[str, Any], sample_data: dict | None) -> Report:
    report = validate_content(channel, content, sample_data)
    if report.errors:
        raise TemplateInvalid(report.errors)
    return report
