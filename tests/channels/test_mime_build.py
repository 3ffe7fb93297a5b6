"""Text emails built sooner: the same MIME tree as Django's own ``message()``, bytes and all."""

from __future__ import annotations

import random
from email.policy import compat32

import pytest
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.core.mail.message import SafeMIMEMultipart, SafeMIMEText

from channels import mime_build
from channels.mime_build import text_message

# Header text: split points, spaces the folding may collapse, line breaks (refused), and
# characters past ASCII (encoded: as words, or as addresses in address headers); now and
# then a line break, which is refused.
HEADER_ALPHABET = 'ab ;,:=?<>"()@.-\t\u00e9\u4e2d'
BODY_ALPHABET = "ab \n\r\t.=\u00e9\u4e2d\U0001f600<>&"
ADDRESSES = [
    "ada@example.com",
    "Ada Lovelace <ada@example.com>",
    "Zo\u00eb Wren <zoe@example.com>",
    "j\u00f6rg@b\u00fccher.example",
    "not an address",
    '"Wren, Zo\u00eb" <zoe@example.com>',
]
HEADER_NAMES = ["X-Tag", "Subject", "To", "From", "Cc", "Date", "Message-ID", "List-Unsubscribe"]


def text(rng: random.Random, alphabet: str, longest: int) -> str:
    narrow = alphabet[: rng.choice((5, len(alphabet)))]
    return "".join(rng.choice(narrow) for _ in range(rng.randint(0, longest)))


def header(rng: random.Random) -> str:
    value = text(rng, HEADER_ALPHABET, 100)
    if rng.random() < 0.03:
        cut = rng.randint(0, len(value))
        value = value[:cut] + rng.choice(("\n", "\r", "\r\n")) + value[cut:]
    return value


def body(rng: random.Random) -> str:
    if rng.random() < 0.15:  # a line past SMTP's limit: quoted-printable
        return text(rng, BODY_ALPHABET, 40) + "x" * rng.randint(990, 1100)
    return text(rng, BODY_ALPHABET, 300)


def random_email(rng: random.Random) -> EmailMessage:
    headers = {rng.choice(HEADER_NAMES): header(rng) for _ in range(rng.randint(0, 4))}
    # Fixed where Django would draw them, so that the two builds can be compared.
    headers.setdefault("Date", "Sat, 05 Dec 2026 02:29:36 -0000")
    headers.setdefault("Message-ID", "<1.2.3.d4@example.com>")
    email = EmailMultiAlternatives(
        subject=header(rng),
        body=body(rng) if rng.random() < 0.9 else "",
        from_email=rng.choice(ADDRESSES),
        to=rng.sample(ADDRESSES, rng.randint(0, 2)),
        cc=rng.sample(ADDRESSES, rng.randint(0, 1)),
        reply_to=rng.sample(ADDRESSES, rng.randint(0, 1)),
        headers=headers,
    )
    for _ in range(rng.choice((0, 1, 1, 2))):
        email.attach_alternative(body(rng), rng.choice(("text/html", "text/plain", "text/x-amp")))
    return email


def built(build, email):
    try:
        msg = build(email)
    except Exception as exc:  # noqa: BLE001 - the same refusal is part of the same result
        return type(exc), str(exc)
    parts = list(msg.walk())
    for index, part in enumerate(parts):
        part.policy = compat32
        if part.is_multipart():
            part.set_boundary(f"==boundary{index}==")
    return (
        # Django's classes (a text part is a SafeMIMEText of its own), with their behaviour.
        [[isinstance(part, kind) for kind in (SafeMIMEText, SafeMIMEMultipart)] for part in parts],
        [part.items() for part in parts],
        msg.as_bytes(),
        msg.as_bytes(linesep="\r\n"),
    )


@pytest.mark.parametrize("seed", range(4))
def test_a_text_email_is_built_as_django_builds_it(seed):
    rng = random.Random(seed)
    for _ in range(300):
        email = random_email(rng)
        assert built(text_message, email) == built(EmailMultiAlternatives.message, email)


def test_a_date_and_a_message_id_are_drawn_as_django_draws_them(monkeypatch):
    monkeypatch.setattr(mime_build, "formatdate", lambda localtime: f"date {localtime}")
    monkeypatch.setattr(mime_build, "make_msgid", lambda domain: f"<id@{domain}>")
    monkeypatch.setattr("django.core.mail.message.formatdate", mime_build.formatdate)
    monkeypatch.setattr("django.core.mail.message.make_msgid", mime_build.make_msgid)
    email = EmailMultiAlternatives("Hi", "Hello", "a@example.com", ["b@example.com"])
    assert built(text_message, email) == built(EmailMultiAlternatives.message, email)
    assert text_message(email)["Date"] == "date False"


def test_a_header_with_a_line_break_is_refused_as_django_refuses_it():
    email = EmailMultiAlternatives("Hi\r\nBcc: eve@example.com", "Hello", to=["b@example.com"])
    assert built(text_message, email)[0].__name__ == "BadHeaderError"


def test_emails_of_other_kinds_are_left_to_django(settings):
    assert text_message(EmailMultiAlternatives("Hi", "Hello")) is not None
    with_file = EmailMultiAlternatives("Hi", "Hello")
    with_file.attach("a.txt", "text", "text/plain")
    assert text_message(with_file) is None
    with_image = EmailMultiAlternatives("Hi", "Hello")
    with_image.attach_alternative(b"\x89PNG", "image/png")
    assert text_message(with_image) is None
    latin = EmailMultiAlternatives("Hi", "Hello")
    latin.encoding = "iso-8859-1"
    assert text_message(latin) is None
    settings.DEFAULT_CHARSET = "iso-8859-1"
    assert text_message(EmailMultiAlternatives("Hi", "Hello")) is None
