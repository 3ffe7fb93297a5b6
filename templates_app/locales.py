"""Locale tags: one spelling to store a template's, one key to match a recipient's."""

from __future__ import annotations

from django.core.validators import RegexValidator
from django.db import models

# A language, then subtags (script, region, variant): en, fr-CA, zh-Hant-TW, es-419.
locale_syntax = RegexValidator(
    r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$",
    "A locale is a language code, then optional subtags: en, fr-CA, zh-Hant-TW, es-419.",
)


def locale_key(locale: str) -> str:
    """One key per locale: "fr_CA", "FR-ca" and "fr-CA" name the same one."""
    return locale.strip().replace("_", "-").lower()


def canonical_locale(locale: str) -> str:
    """The conventional spelling of a tag: "fr_ca" -> "fr-CA", "zh_hant_tw" -> "zh-Hant-TW"."""
    language, *subtags = locale_key(locale).split("-")
    spelled = [language]
    for subtag in subtags:
        if len(subtag) == 2 and subtag.isalpha():
            subtag = subtag.upper()  # region
        elif len(subtag) == 4 and subtag.isalpha():
            subtag = subtag.title()  # script
        spelled.append(subtag)
    return "-".join(spelled)


class LocaleField(models.CharField):
    """A locale written and looked up in its canonical spelling.

    Two spellings of one locale would make two templates where sending finds only one:
    "fr_ca" saved, or asked for, is "fr-CA", so the unique constraint sees them as one.
    """

    default_validators = [locale_syntax]

    def to_python(self, value):
        value = super().to_python(value)
        return canonical_locale(value) if value else value

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        return canonical_locale(value) if isinstance(value, str) and value else value

    def pre_save(self, model_instance, add):
        value = getattr(model_instance, self.attname)
        if isinstance(value, str) and value:
            value = canonical_locale(value)
            setattr(model_instance, self.attname, value)
        return value
