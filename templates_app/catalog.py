"""Catalog as code: categories, notification types, layouts and templates from one YAML file.

The file format is documented in docs/catalog.md. Syncing is idempotent: a type or layout is
updated in place, and a template gets a new version only when its content changed. A file
with any problem changes nothing: every problem is reported at once, with its place.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from django.core.exceptions import ValidationError
from django.core.validators import slug_re
from django.db import transaction

from notifications.models import (
    Category,
    Channel,
    NotificationType,
    Traffic,
    channels_problems,
    fallbacks_problems,
)

from .compiling import CONTENT_SLOT, templates_using
from .locales import canonical_locale, locale_syntax
from .models import Layout, Template, UtmParameters
from .services import template_version_save, templates_recompile
from .validation import TemplateInvalid, syntax_problems

KEY_LENGTH = 100  # the key columns of categories, types and layouts

# Parts each channel's template must have, and parts it may have.
REQUIRED_PARTS = {
    Channel.EMAIL: {"subject", "html"},
    Channel.SMS: {"text"},
    Channel.IN_APP: {"title", "body"},
    Channel.WEBHOOK: set(),
}
OPTIONAL_PARTS = {
    Channel.EMAIL: {"text"},
    Channel.SMS: set(),
    Channel.IN_APP: {"link"},
    Channel.WEBHOOK: {"payload"},
}
TYPE_FIELDS = {
    "key",
    "name",
    "description",
    "category",
    "traffic",
    "channels",
    "fallbacks",
    "sample_data",
    "layout",
    "is_active",
    "templates",
    "utm",
}


class CatalogError(Exception):
    """The catalog file cannot be synced; ``problems`` says where and why."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass
class SyncResult:
    created: Counter = field(default_factory=Counter)
    updated: Counter = field(default_factory=Counter)
    unchanged: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        kinds = sorted(set(self.created) | set(self.updated) | set(self.unchanged))
        return "; ".join(
            f"{kind}: {self.created[kind]} created, {self.updated[kind]} updated, "
            f"{self.unchanged[kind]} unchanged"
            for kind in kinds
        )


def load(path: str | Path) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogError([f"{path}: cannot read ({exc.strerror})"]) from exc
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CatalogError([f"{path}: not valid YAML: {exc}"]) from exc
    if not isinstance(document, dict):
        raise CatalogError([f"{path}: the top level must be a mapping"])
    return document


def sync_file(path: str | Path, *, user=None) -> SyncResult:
    return sync(load(path), user=user)


@transaction.atomic
def sync(document: dict[str, Any], *, user=None) -> SyncResult:
    """Create or update everything the document describes; raise CatalogError on problems."""
    problems = validate(document)
    if problems:
        raise CatalogError(problems)
    result = SyncResult()
    categories = {
        item["key"]: _upsert(
            Category,
            result,
            "categories",
            key=item["key"],
            values={
                "name": item.get("name", item["key"]),
                "description": item.get("description", ""),
            },
        )[0]
        for item in document.get("categories", [])
    }
    categories.update({c.key: c for c in Category.objects.exclude(key__in=categories)})
    # Email templates compiled with something the sync changes, the ones made in the admin
    # included: each is compiled again at the end.
    stale: set[int] = set()
    failed: list[str] = []
    layouts = {}
    for item in document.get("layouts", []):
        layout, changed = _upsert(
            Layout,
            result,
            "layouts",
            key=item["key"],
            values={
                "name": item.get("name", item["key"]),
                "html": item["html"],
                "text": item.get("text", ""),
            },
        )
        layouts[item["key"]] = layout
        if {"html", "text"} & set(changed):
            stale.update(templates_using(layout=layout).values_list("pk", flat=True))
    layouts.update({la.key: la for la in Layout.objects.exclude(key__in=layouts)})
    for item in document.get("types", []):
        ntype, changed = _upsert(
            NotificationType,
            result,
            "types",
            key=item["key"],
            values={
                "name": item.get("name", item["key"]),
                "description": item.get("description", ""),
                "category": categories[item["category"]],
                "traffic": item["traffic"],
                "channels": list(item["channels"]),
                "fallbacks": dict(item.get("fallbacks") or {}),
                "sample_data": dict(item.get("sample_data") or {}),
                "is_active": item.get("is_active", True),
            },
        )
        # Traffic decides the marketing footer; UTM parameters tag the links.
        if _sync_utm(ntype, item.get("utm") or {}) or "traffic" in changed:
            stale.update(templates_using(ntype=ntype).values_list("pk", flat=True))
        layout = layouts.get(item["layout"]) if item.get("layout") else None
        for channel, by_locale in (item.get("templates") or {}).items():
            for locale, content in by_locale.items():
                try:
                    _sync_template(ntype, channel, str(locale), content, layout, result, user)
                except CatalogError as exc:
                    failed.extend(exc.problems)  # every template is tried: all are listed
    if failed:
        raise CatalogError(failed)  # and nothing is kept (the sync is one transaction)
    result.updated["templates"] += _recompile(stale, user)
    return result


def _recompile(template_ids: set[int], user) -> int:
    """Compile stale templates again; those the file just saved come out unchanged."""
    templates = Template.objects.filter(pk__in=template_ids, current_version__isnull=False)
    try:
        return templates_recompile(
            templates.select_related("notification_type", "current_version"), user=user
        )
    except TemplateInvalid as exc:
        raise CatalogError([f"templates compiled again: {p}" for p in exc.problems]) from exc


def _sync_utm(ntype, params: dict) -> bool:
    """Store the type's UTM parameters; whether they changed."""
    current = UtmParameters.objects.filter(notification_type=ntype).first()
    if (current.params if current else {}) == params:
        return False
    if params:
        UtmParameters.objects.update_or_create(notification_type=ntype, defaults={"params": params})
    else:
        UtmParameters.objects.filter(notification_type=ntype).delete()
    return True


def _upsert(model, result: SyncResult, kind: str, *, key: str, values: dict):
    """The object, created or updated, and the names of the fields an update changed."""
    obj = model.objects.filter(key=key).first()
    if obj is None:
        result.created[kind] += 1
        return model.objects.create(key=key, **values), []
    changed = [name for name, value in values.items() if getattr(obj, name) != value]
    if not changed:
        result.unchanged[kind] += 1
        return obj, []
    for name in changed:
        setattr(obj, name, values[name])
    obj.save()
    result.updated[kind] += 1
    return obj, changed


def _sync_template(ntype, channel, locale, content, layout, result, user) -> None:
    template, created = Template.objects.get_or_create(
        notification_type=ntype, channel=channel, locale=locale, defaults={"layout": layout}
    )
    if (
        not created
        and channel == Channel.EMAIL
        and template.layout_id != getattr(layout, "id", None)
    ):
        template.layout = layout
        template.save(update_fields=["layout", "updated_at"])
    content = {part: value for part, value in content.items() if value is not None}
    try:
        _, new_version = template_version_save(template, content, user=user)
    except TemplateInvalid as exc:
        where = f"types ({ntype.key}).templates.{channel}.{locale}"
        raise CatalogError([f"{where}: {problem}" for problem in exc.problems]) from exc
    if created:
        result.created["templates"] += 1
    elif new_version:
        result.updated["templates"] += 1
    else:
        result.unchanged["templates"] += 1


def validate(document: dict[str, Any]) -> list[str]:
    """Every problem in the document, each prefixed with where it is."""
    problems: list[str] = []
    unknown = set(document) - {"categories", "layouts", "types"}
    if unknown:
        problems.append(f"unknown top-level keys: {_names(unknown)}")
    categories = {c.key for c in Category.objects.all()}
    for i, item in enumerate(_list(document, "categories", problems)):
        if _has_key(item, f"categories[{i}]", problems):
            categories.add(item["key"])
            problems.extend(_text_problems(item, f"categories[{i}]", name=200, description=None))
    layouts = set(Layout.objects.values_list("key", flat=True))
    for i, item in enumerate(_list(document, "layouts", problems)):
        where = f"layouts[{i}]"
        if _has_key(item, where, problems):
            layouts.add(item["key"])
            problems.extend(_text_problems(item, where, name=200, text=None))
            html = item.get("html")
            if not isinstance(html, str) or not CONTENT_SLOT.search(html):
                problems.append(f"{where}.html: required, and must place {{{{ content }}}}")
            else:
                # Checked as it will be compiled: with the content spliced in its slot.
                spliced = {"html": CONTENT_SLOT.sub("", html)}
                if isinstance(item.get("text"), str):
                    spliced["text"] = CONTENT_SLOT.sub("", item["text"])
                problems.extend(f"{where}.{p}" for p in syntax_problems(spliced))
    seen: set[str] = set()
    for i, item in enumerate(_list(document, "types", problems)):
        where = f"types[{i}]"
        if not _has_key(item, where, problems):
            continue
        where = f"types[{i}] ({item['key']})"
        if item["key"] in seen:
            problems.append(f"{where}: key appears twice")
        seen.add(item["key"])
        problems.extend(_type_problems(item, where, categories, layouts))
    return problems


def _names(keys) -> str:
    return ", ".join(sorted(map(str, keys)))


def _text_problems(item: dict, where: str, **fields: int | None) -> list[str]:
    """Optional text fields: text if given (not null, not a list), within their length."""
    problems = []
    for name, limit in fields.items():
        if name not in item:
            continue
        value = item[name]
        if not isinstance(value, str):
            problems.append(f"{where}.{name}: must be text")
        elif limit is not None and len(value) > limit:
            problems.append(f"{where}.{name}: at most {limit} characters")
    return problems


def _list(document: dict, name: str, problems: list[str]) -> list:
    value = document.get(name) or []
    if not isinstance(value, list):
        problems.append(f"{name}: must be a list")
        return []
    return value


def _has_key(item: Any, where: str, problems: list[str]) -> bool:
    if not isinstance(item, dict) or not isinstance(item.get("key"), str) or not item["key"]:
        problems.append(f"{where}: must be a mapping with a non-empty string 'key'")
        return False
    # What the key columns hold (slugs of 100 at most): reported here, not left to the INSERT.
    key = item["key"]
    if len(key) > KEY_LENGTH:
        problems.append(f"{where}.key: at most {KEY_LENGTH} characters")
        return False
    if not slug_re.match(key):
        problems.append(f"{where}.key: letters, digits, hyphens and underscores only ({key!r})")
        return False
    return True


def _type_problems(item: dict, where: str, categories: set, layouts: set) -> list[str]:
    problems = []
    unknown = set(item) - TYPE_FIELDS
    if unknown:
        problems.append(f"{where}: unknown fields: {_names(unknown)}")
    problems.extend(_text_problems(item, where, name=200, description=None))
    if not isinstance(item.get("category"), str) or item["category"] not in categories:
        problems.append(f"{where}.category: unknown category {item.get('category')!r}")
    if not isinstance(item.get("sample_data", {}), dict):
        problems.append(f"{where}.sample_data: must be a mapping")
    if not isinstance(item.get("is_active", True), bool):
        problems.append(f"{where}.is_active: must be true or false")
    if item.get("traffic") not in Traffic.values:
        problems.append(f"{where}.traffic: must be one of {', '.join(Traffic.values)}")
    channels = item.get("channels")
    if channel_problems := channels_problems(channels):
        problems.extend(f"{where}.channels: {p}" for p in channel_problems)
        channels = (
            [c for c in channels if c in Channel.values] if isinstance(channels, list) else []
        )
    utm = item.get("utm") or {}
    if not isinstance(utm, dict) or any(
        not (isinstance(k, str) and k.startswith("utm_") and isinstance(v, str))
        for k, v in utm.items()
    ):
        problems.append(f"{where}.utm: must map utm_* names to text")
    if item.get("layout") and (
        not isinstance(item["layout"], str) or item["layout"] not in layouts
    ):
        problems.append(f"{where}.layout: unknown layout {item['layout']!r}")
    problems.extend(
        f"{where}.fallbacks: {p}" for p in fallbacks_problems(item.get("fallbacks") or {})
    )
    templates = item.get("templates") or {}
    if not isinstance(templates, dict):
        return [*problems, f"{where}.templates: must map channel -> locale -> parts"]
    for channel in channels:
        if channel != Channel.WEBHOOK and channel not in templates:
            problems.append(f"{where}.templates: no {channel} template, but it sends on {channel}")
    for channel, by_locale in templates.items():
        problems.extend(_template_problems(channel, by_locale, f"{where}.templates.{channel}"))
    return problems


def _template_problems(channel: str, by_locale: Any, where: str) -> list[str]:
    if channel not in Channel.values:
        return [f"{where}: unknown channel"]
    if not isinstance(by_locale, dict) or not by_locale:
        return [f"{where}: must map a locale (en, fr, fr-CA...) to the template's parts"]
    problems = []
    spellings: dict[str, str] = {}
    for locale, content in by_locale.items():
        here = f"{where}.{locale}"
        if not isinstance(locale, str) or not 2 <= len(locale) <= 16:
            # YAML reads a bare no: (Norwegian) as false: quote it, "no".
            problems.append(f"{here}: a locale is a quoted code of 2-16 characters (en, fr-CA)")
            continue
        try:
            locale_syntax(locale)
        except ValidationError as exc:
            problems.append(f"{here}: {exc.messages[0]}")
            continue
        spelled = canonical_locale(locale)
        if spelled in spellings:
            problems.append(f"{here}: the same locale as {spellings[spelled]} ({spelled})")
            continue
        spellings[spelled] = locale
        if not isinstance(content, dict):
            problems.append(f"{here}: must be a mapping of parts")
            continue
        missing = REQUIRED_PARTS[channel] - set(content)
        extra = set(content) - REQUIRED_PARTS[channel] - OPTIONAL_PARTS[channel]
        if missing:
            problems.append(f"{here}: missing parts: {', '.join(sorted(missing))}")
        if extra:
            problems.append(f"{here}: unknown parts: {_names(extra)}")
        bad = [p for p, v in content.items() if v is not None and not isinstance(v, str)]
        if bad:
            problems.append(f"{here}: parts must be text: {_names(bad)}")
        else:
            parts = {p: v for p, v in content.items() if v is not None}
            problems.extend(f"{here}.{problem}" for problem in syntax_problems(parts))
    return problems
