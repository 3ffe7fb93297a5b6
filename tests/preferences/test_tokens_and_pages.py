"""Signed links: the preference center and the unsubscribe page, and what bad tokens do."""

from __future__ import annotations

import html
import re

import pytest
from django.core import signing
from django.test import Client

from preferences.models import ConsentLog, Preference
from preferences.services import preferences_snapshot
from preferences.tokens import PREFERENCES, UNSUBSCRIBE, BadToken, make_token, read_token

pytestmark = pytest.mark.django_db


def test_a_token_names_its_recipient_and_category(ada, promotions):
    grant = read_token(make_token(ada, UNSUBSCRIBE, promotions), UNSUBSCRIBE)
    assert (grant.recipient, grant.category) == (ada, promotions)


def test_a_token_of_one_scope_is_refused_in_another(ada):
    with pytest.raises(BadToken) as error:
        read_token(make_token(ada, PREFERENCES), UNSUBSCRIBE)
    assert error.value.reason == "invalid"


def test_a_token_is_what_djangos_signing_writes_and_follows_the_secret_key(
    ada, promotions, settings, monkeypatch
):
    monkeypatch.setattr("time.time", lambda: 1_800_000_000.0)
    token = make_token(ada, UNSUBSCRIBE, promotions)
    payload = {"r": ada.pk, "c": promotions.pk}
    salt = "clarion.preferences.unsubscribe"
    assert token == signing.dumps(payload, salt=salt, compress=True)
    settings.SECRET_KEY = "rotated-" + settings.SECRET_KEY
    rotated = make_token(ada, UNSUBSCRIBE, promotions)
    assert rotated != token
    assert rotated == signing.dumps(payload, salt=salt, compress=True)


def tampered(token: str) -> str:
    payload, _, signature = token.rpartition(":")
    return f"{payload}:{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"


def test_a_tampered_token_gets_a_400_page_and_changes_nothing(ada, marketing):
    client = Client(enforce_csrf_checks=True)
    token = tampered(make_token(ada, UNSUBSCRIBE, marketing.category))
    for method in (client.get, client.post):
        response = method(f"/unsubscribe/{token}/", {"List-Unsubscribe": "One-Click"})
        assert response.status_code == 400
        assert b"This link is not valid" in response.content
    response = client.get(f"/preferences/{tampered(make_token(ada, PREFERENCES))}/")
    assert response.status_code == 400
    assert not Preference.objects.exists()
    assert not ConsentLog.objects.exists()


def test_an_expired_token_gets_a_403_page_and_changes_nothing(
    ada, marketing, settings, monkeypatch
):
    settings.PREFERENCE_TOKEN_MAX_AGE_SECONDS = 60
    real_time = signing.time.time
    monkeypatch.setattr(signing.time, "time", lambda: real_time() - 3600)
    token = make_token(ada, UNSUBSCRIBE, marketing.category)
    monkeypatch.setattr(signing.time, "time", real_time)
    response = Client().post(f"/unsubscribe/{token}/", {"List-Unsubscribe": "One-Click"})
    assert response.status_code == 403
    assert b"This link has expired" in response.content
    assert not Preference.objects.exists()


def test_a_token_for_an_erased_recipient_is_refused(ada):
    token = make_token(ada, PREFERENCES)
    ada.erased_at = ada.created_at
    ada.save()
    assert Client().get(f"/preferences/{token}/").status_code == 400


def test_unsubscribe_get_shows_a_button_and_changes_nothing(ada, marketing):
    token = make_token(ada, UNSUBSCRIBE, marketing.category)
    response = Client().get(f"/unsubscribe/{token}/")
    assert response.status_code == 200
    assert b'<button type="submit">Unsubscribe</button>' in response.content
    assert "Promotions" in response.content.decode()
    assert not Preference.objects.exists()


def test_the_confirm_button_unsubscribes_the_category(ada, marketing):
    token = make_token(ada, UNSUBSCRIBE, marketing.category)
    response = Client(enforce_csrf_checks=True).post(f"/unsubscribe/{token}/", {"confirm": "1"})
    assert response.status_code == 200
    assert preferences_snapshot(ada)["categories"]["promotions"]["frequency"] == "off"
    assert ConsentLog.objects.get().source == ConsentLog.Source.PREFERENCE_CENTER


def test_a_post_without_the_one_click_body_is_refused(ada, marketing):
    token = make_token(ada, UNSUBSCRIBE, marketing.category)
    response = Client().post(f"/unsubscribe/{token}/", {"something": "else"})
    assert response.status_code == 400
    assert not Preference.objects.exists()


def test_the_preference_center_post_needs_a_csrf_token(ada, marketing):
    token = make_token(ada, PREFERENCES)
    response = Client(enforce_csrf_checks=True).post(
        f"/preferences/{token}/", {"all_marketing_off": "on"}
    )
    assert response.status_code == 403
    assert preferences_snapshot(ada)["marketing"] is True


def test_the_preference_center_saves_and_logs_with_ip_and_user_agent(ada, marketing):
    client = Client()
    url = f"/preferences/{make_token(ada, PREFERENCES)}/"
    page = client.get(url)
    assert page.status_code == 200
    assert b'name="channel-promotions-email"' in page.content
    response = client.post(
        url,
        {"frequency-promotions": "daily", "all_marketing_off": "on"},
        HTTP_USER_AGENT="Firefox/140",
        REMOTE_ADDR="203.0.113.9",
    )
    assert response.status_code == 302
    assert client.get(response["Location"]).content.count(b"Your preferences are saved") == 1
    snapshot = preferences_snapshot(ada)
    assert snapshot["marketing"] is False
    promotions = snapshot["categories"]["promotions"]
    assert promotions == {"frequency": "daily", "channels": {"email": False}}
    log = ConsentLog.objects.get()
    assert (log.source, log.ip_address, log.user_agent) == (
        ConsentLog.Source.PREFERENCE_CENTER,
        "203.0.113.9",
        "Firefox/140",
    )
    assert log.before["marketing"] is True and log.after["marketing"] is False


def test_the_pages_speak_the_recipients_language(ada, marketing):
    ada.locale = "fr-CA"
    ada.save()
    page = Client().get(f"/preferences/{make_token(ada, PREFERENCES)}/").content.decode()
    assert '<html lang="fr">' in page
    assert "Me désabonner de tout le marketing" in page
    assert "Résumé quotidien" in page
    confirm = Client().get(f"/unsubscribe/{make_token(ada, UNSUBSCRIBE, marketing.category)}/")
    assert "Se désabonner" in confirm.content.decode()


def test_quiet_hours_are_set_and_cleared_on_the_page(ada, marketing):
    client = Client()
    url = f"/preferences/{make_token(ada, PREFERENCES)}/"
    client.post(
        url, {"frequency-promotions": "instant", "quiet_start": "22:00", "quiet_end": "07:00"}
    )
    assert preferences_snapshot(ada)["quiet_hours"] == {"start": "22:00", "end": "07:00"}
    assert 'value="22:00"' in client.get(url).content.decode()
    client.post(url, {"frequency-promotions": "instant", "quiet_start": "", "quiet_end": ""})
    assert preferences_snapshot(ada)["quiet_hours"] is None


def test_half_a_quiet_window_is_refused_and_nothing_is_saved(ada, marketing):
    url = f"/preferences/{make_token(ada, PREFERENCES)}/"
    response = Client().post(
        url, {"frequency-promotions": "off", "all_marketing_off": "on", "quiet_start": "22:00"}
    )
    assert response.status_code == 400
    assert b'id="invalid"' in response.content
    assert not Preference.objects.exists()
    assert not ConsentLog.objects.exists()


def test_an_opt_in_type_starts_off_on_the_page_and_turning_it_on_opts_in(ada, marketing):
    from notifications.models import Delivery
    from preferences.models import TypeDefault

    from .conftest import send

    TypeDefault.objects.create(notification_type=marketing, enabled=False)
    first = send(marketing, [ada], {"deal": "1"})
    assert Delivery.objects.get(notification=first).skip_reason == "not_opted_in"
    url = f"/preferences/{make_token(ada, PREFERENCES)}/"
    page = Client().get(url).content.decode()
    assert '<option value="off" selected>' in page
    Client().post(url, {"frequency-promotions": "instant", "channel-promotions-email": "on"})
    second = send(marketing, [ada], {"deal": "2"})
    assert Delivery.objects.get(notification=second).status == "sent"


def test_an_unsubscribe_from_a_client_with_odd_headers_is_logged_without_them(ada, marketing):
    token = make_token(ada, UNSUBSCRIBE, marketing.category)
    client = Client(HTTP_USER_AGENT="Mail\x00Client", REMOTE_ADDR="not-an-ip")
    response = client.post(f"/unsubscribe/{token}/", {"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    log = ConsentLog.objects.get()
    assert (log.user_agent, log.ip_address) == ("MailClient", None)
    assert preferences_snapshot(ada)["categories"]["promotions"]["frequency"] == "off"


def test_a_token_for_a_category_deleted_since_unsubscribes_from_nothing(ada, marketing):
    from notifications.models import Category

    gone = Category.objects.create(key="gone", name="Gone")
    token = make_token(ada, UNSUBSCRIBE, gone)
    gone.delete()
    with pytest.raises(BadToken):
        read_token(token, UNSUBSCRIBE)
    response = Client().post(f"/unsubscribe/{token}/", {"List-Unsubscribe": "One-Click"})
    assert response.status_code == 400
    assert preferences_snapshot(ada)["marketing"] is True and not ConsentLog.objects.exists()


def opt_in_type(promotions):
    """A second marketing type of the same category that nobody gets until they opt in."""
    from notifications.models import Traffic
    from preferences.models import TypeDefault

    from .conftest import make_type

    vip = make_type("vip-offers", Traffic.MARKETING, promotions)
    TypeDefault.objects.create(notification_type=vip, enabled=False)
    return vip


def test_saving_the_page_untouched_writes_nothing_and_opts_into_nothing(ada, marketing):
    from notifications.models import Delivery

    from .conftest import send

    vip = opt_in_type(marketing.category)
    client = Client()
    url = f"/preferences/{make_token(ada, PREFERENCES)}/"
    page = client.get(url).content.decode()
    assert '<option value="instant" selected>' in page
    assert 'id="channel-promotions-email" checked>' in page
    # Exactly what the browser submits for the page as it was shown.
    untouched = {
        "frequency-promotions": "instant",
        "channel-promotions-email": "on",
        "quiet_start": "",
        "quiet_end": "",
    }
    assert client.post(url, untouched).status_code == 302
    assert not Preference.objects.exists()
    assert not ConsentLog.objects.exists()
    sent = send(vip, [ada], {"deal": "1"})
    assert Delivery.objects.get(notification=sent).skip_reason == "not_opted_in"


def test_turning_a_category_off_on_the_page_stops_types_turned_on_one_by_one(ada, marketing):
    from notifications.models import Delivery
    from preferences.services import Actor, preferences_update

    from .conftest import send

    vip = opt_in_type(marketing.category)
    preferences_update(
        recipient=ada,
        changes={"types": {"vip-offers": {"enabled": True, "channels": {"email": True}}}},
        actor=Actor(source=ConsentLog.Source.API),
    )
    url = f"/preferences/{make_token(ada, PREFERENCES)}/"
    Client().post(url, {"frequency-promotions": "off", "channel-promotions-email": "on"})
    for ntype in (marketing, vip):
        sent = send(ntype, [ada], {"deal": "1"})
        assert Delivery.objects.get(notification=sent).status == "skipped", ntype.key
    assert preferences_snapshot(ada)["types"]["vip-offers"] == {
        "enabled": False,
        "channels": {"email": False},
    }


def test_unticking_a_channel_on_the_page_stops_it_for_types_turned_on_one_by_one(ada, marketing):
    from notifications.models import Delivery
    from preferences.services import Actor, preferences_update

    from .conftest import send

    vip = opt_in_type(marketing.category)
    preferences_update(
        recipient=ada,
        changes={"types": {"vip-offers": {"enabled": True}}},
        actor=Actor(source=ConsentLog.Source.API),
    )
    url = f"/preferences/{make_token(ada, PREFERENCES)}/"
    Client().post(url, {"frequency-promotions": "instant"})
    sent = send(vip, [ada], {"deal": "1"})
    assert Delivery.objects.get(notification=sent).status == "skipped"
    assert preferences_snapshot(ada)["types"]["vip-offers"] == {
        "enabled": True,
        "channels": {"email": False},
    }


def form_as_shown(page: str) -> dict:
    """What a browser submits for the page as it was shown, its hidden state included."""
    shown = re.search(r'name="shown" value="([^"]*)"', page)
    assert shown, "the page carries no shown state"
    return {
        "shown": html.unescape(shown.group(1)),
        "frequency-promotions": re.search(r'<option value="(\w+)" selected>', page).group(1),
        **(
            {"channel-promotions-email": "on"}
            if 'id="channel-promotions-email" checked' in page
            else {}
        ),
        **({"all_marketing_off": "on"} if 'id="all_marketing_off" checked' in page else {}),
        "quiet_start": "",
        "quiet_end": "",
    }


def test_an_unsubscribe_after_the_page_was_shown_survives_saving_that_page(ada, marketing):
    client = Client()
    url = f"/preferences/{make_token(ada, PREFERENCES)}/"
    form = form_as_shown(client.get(url).content.decode())
    # The person clicks "unsubscribe" in an email while the page is still open.
    one_click = Client().post(
        f"/unsubscribe/{make_token(ada, UNSUBSCRIBE)}/",
        {"List-Unsubscribe": "One-Click"},
    )
    assert one_click.status_code == 200

    assert client.post(url, form).status_code == 302

    assert preferences_snapshot(ada)["marketing"] is False
    assert not ConsentLog.objects.filter(source=ConsentLog.Source.PREFERENCE_CENTER).exists()


def test_a_category_unsubscribed_meanwhile_stays_off_when_the_page_saves_something_else(
    ada, marketing
):
    from preferences.services import Actor, unsubscribe_category

    client = Client()
    url = f"/preferences/{make_token(ada, PREFERENCES)}/"
    form = form_as_shown(client.get(url).content.decode())
    unsubscribe_category(
        recipient=ada, category=marketing.category, actor=Actor(source=ConsentLog.Source.API)
    )

    form.update(quiet_start="22:00", quiet_end="07:00")
    assert client.post(url, form).status_code == 302

    snapshot = preferences_snapshot(ada)
    assert snapshot["quiet_hours"] == {"start": "22:00", "end": "07:00"}
    assert snapshot["categories"]["promotions"]["frequency"] == "off"


def test_a_choice_changed_on_the_page_wins_over_one_made_meanwhile(ada, marketing):
    from preferences.services import Actor, unsubscribe_category

    client = Client()
    url = f"/preferences/{make_token(ada, PREFERENCES)}/"
    form = form_as_shown(client.get(url).content.decode())
    unsubscribe_category(
        recipient=ada, category=marketing.category, actor=Actor(source=ConsentLog.Source.API)
    )

    form["frequency-promotions"] = "daily"  # chosen on the page, after seeing "instant"
    assert client.post(url, form).status_code == 302

    assert preferences_snapshot(ada)["categories"]["promotions"]["frequency"] == "daily"


@pytest.mark.parametrize("shown", ["", "not json", "[]", '{"categories": [], "marketing": 1}'])
def test_a_page_without_a_readable_shown_state_is_compared_with_what_is_stored(
    ada, marketing, shown
):
    client = Client()
    url = f"/preferences/{make_token(ada, PREFERENCES)}/"
    form = form_as_shown(client.get(url).content.decode())
    form.update(shown=shown, all_marketing_off="on")

    assert client.post(url, form).status_code == 302

    assert preferences_snapshot(ada)["marketing"] is False


@pytest.mark.parametrize(
    "shown",
    [
        "[" * 100_000,  # nested past the recursion limit
        '{"marketing": true, "quiet_hours": null, "categories": {"promotions": '
        '{"frequency": ["instant"], "channels": {"email": true}}}}',
    ],
)
def test_a_hostile_shown_state_changes_nothing_the_person_did_not_post(ada, marketing, shown):
    client = Client()
    url = f"/preferences/{make_token(ada, PREFERENCES)}/"
    form = form_as_shown(client.get(url).content.decode())
    form["shown"] = shown

    assert client.post(url, form).status_code == 302

    assert not Preference.objects.exists()
    assert not ConsentLog.objects.exists()


def test_a_shown_frequency_that_is_no_frequency_is_compared_with_what_is_stored(ada, marketing):
    # Taken at its word, "bogus" would make the posted "instant" a choice to write, and an
    # explicit "instant" opts into the category's opt-in types.
    client = Client()
    url = f"/preferences/{make_token(ada, PREFERENCES)}/"
    form = form_as_shown(client.get(url).content.decode())
    form["shown"] = form["shown"].replace('"frequency":"instant"', '"frequency":"bogus"')
    assert '"bogus"' in form["shown"]

    assert client.post(url, form).status_code == 302

    assert not Preference.objects.exists()
