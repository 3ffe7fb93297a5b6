"""Suppressions are matched by a keyed hash of the normalised address."""

from __future__ import annotations

import hashlib
import hmac

from preferences.addresses import address_hash


def test_the_hash_is_hmac_sha256_of_the_normalised_address_under_the_key(settings):
    settings.SUPPRESSION_HASH_KEY = "first key"

    found = address_hash("email", "  Ada@Example.COM ")

    expected = hmac.new(b"first key", b"email:ada@example.com", hashlib.sha256).hexdigest()
    assert found == expected
    assert address_hash("email", "ada@example.com") == found


def test_another_key_gives_another_hash(settings):
    settings.SUPPRESSION_HASH_KEY = "first key"
    first = address_hash("sms", "+33 6 12 34 56 78")
    settings.SUPPRESSION_HASH_KEY = "second key"

    second = address_hash("sms", "+33612345678")

    assert second != first
    assert second == hmac.new(b"second key", b"sms:+33612345678", hashlib.sha256).hexdigest()
