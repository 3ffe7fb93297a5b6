"""``field__any``: a list as one array parameter, matching what ``field__in`` matches."""

from __future__ import annotations

import pytest

from notifications.lookups import array_literal
from notifications.models import NotificationType, Recipient
from preferences.models import Suppression
from tests.factories import RecipientFactory

pytestmark = pytest.mark.django_db


def test_the_any_lookup_matches_a_list_as_in_does():
    people = [RecipientFactory(external_id=f"p{i}") for i in range(5)]
    ids = [p.id for p in people[1:4]]
    assert set(Recipient.objects.filter(id__any=ids)) == set(Recipient.objects.filter(id__in=ids))
    assert list(Recipient.objects.filter(id__any=[])) == []
    assert set(Recipient.objects.filter(external_id__any=["p0", "p4", "nobody"])) == {
        people[0],
        people[4],
    }
    Suppression.objects.create(channel="email", address_hash="h1", reason="manual")
    assert Suppression.objects.filter(address_hash__any={"h1", "h2"}).count() == 1
    assert NotificationType.objects.filter(category_id__any=[0]).count() == 0


def test_sets_key_views_and_values_needing_preparation_match_too():
    people = [RecipientFactory(external_id=f"p{i}") for i in range(4)]
    by_id = {p.id: p for p in people[:2]}
    expected = set(people[:2])
    # A foreign key and a primary key, given a set, a dict's keys, and ids as text (which
    # must be prepared to integers, not passed on as they are).
    assert set(Recipient.objects.filter(id__any=set(by_id))) == expected
    assert set(Recipient.objects.filter(id__any=by_id.keys())) == expected
    assert set(Recipient.objects.filter(id__any=[str(i) for i in by_id])) == expected


def test_an_empty_list_matches_nothing_without_a_query(django_assert_num_queries):
    RecipientFactory(external_id="p0")

    with django_assert_num_queries(0):
        assert list(Recipient.objects.filter(id__any=[])) == []
    assert Recipient.objects.exclude(id__any=[]).count() == 1


AWKWARD = ['say "hi"', "back\\slash", "a,b", "{braces}", "NULL", "", " spaced ", "é€😀", '\\"']


def test_strings_that_need_quoting_in_an_array_match_exactly():
    for i, value in enumerate(AWKWARD):
        RecipientFactory(external_id=f"x{i}", email=value)
    RecipientFactory(external_id="other", email="say hi")

    found = Recipient.objects.filter(email__any=AWKWARD).values_list("email", flat=True)

    assert sorted(found) == sorted(AWKWARD)
    assert array_literal([1, 2]) == "{1,2}"
    assert array_literal(["a", 1]) is None  # mixed: bound element by element instead


def test_a_value_longer_than_the_column_matches_nothing_rather_than_its_first_part():
    RecipientFactory(external_id="a" * 255)
    assert not Recipient.objects.filter(external_id__any=["a" * 300]).exists()
    assert Recipient.objects.filter(external_id__any=["a" * 255]).exists()
