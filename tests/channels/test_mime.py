"""Short headers written as they stand: the same bytes as Django's compat32, only sooner."""

from __future__ import annotations

import random
from email.header import Header
from email.policy import compat32

import pytest

from channels.base import Message
from channels.email import EmailProvider
from channels.mime import AS_IS_WHEN_SHORT

NAMES = ["To", "Subject", "List-Unsubscribe", "X-A-Long-Header-Name-Of-Forty-Characters"]
# Characters the folding algorithm treats specially: its split points, whitespace it may
# collapse or break at, line breaks it splits on, and characters outside printable ASCII.
ALPHABET = 'ab ;,:=<>"()@.\t\x00\x0b\x0c\x1c\x7f\u00e9\u2028\n\r'


def values(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [
        "".join(rng.choice(ALPHABET[: rng.choice((12, len(ALPHABET)))]) for _ in range(length))
        for length in (rng.randint(0, 90) for _ in range(count))
    ]


def single_words(count: int, seed: int) -> list[str]:
    """Values with no space in them, most too long for the line: a URL in angle brackets."""
    rng = random.Random(seed)
    word = ALPHABET.replace(" ", "").replace("\t", "")
    return [
        "".join(rng.choice(word[: rng.choice((11, len(word)))]) for _ in range(length))
        for length in (rng.randint(30, 200) for _ in range(count))
    ]


def outcome(fold, name, value):
    try:
        return fold(name, value)
    except Exception as exc:  # noqa: BLE001 - the same refusal is part of the same result
        return type(exc)


@pytest.mark.parametrize("linesep", ["\n", "\r\n"])
@pytest.mark.parametrize("max_line_length", [78, 40, 0, None])
def test_every_header_comes_out_as_compat32_writes_it(linesep, max_line_length):
    ours = AS_IS_WHEN_SHORT.clone(linesep=linesep, max_line_length=max_line_length)
    theirs = compat32.clone(linesep=linesep, max_line_length=max_line_length)
    edges = ["", " ", "a  b ", "x" * 58, "x" * 59, "x" * 60, "a;b, c" * 14, "\u00e9t\u00e9"]
    for name in NAMES:
        # Words that end exactly at the line's limit, and one character past it.
        room = (max_line_length or 78) - len(name) - 2
        at_limit = [("ab " * 40)[:n].rstrip().ljust(n, "x") for n in (room - 1, room, room + 1)]
        at_limit += ["x" * n for n in (room - 1, room, room + 1, room + 2)]
        randoms = [*values(400, seed=len(name)), *single_words(200, seed=len(name))]
        for value in [*edges, *at_limit, *randoms]:
            assert outcome(ours.fold_binary, name, value) == outcome(
                theirs.fold_binary, name, value
            ), (name, value)
            assert outcome(ours.fold, name, value) == outcome(theirs.fold, name, value)
        header = Header("\u00e9t\u00e9 " * 30, "utf-8", header_name=name)
        assert ours.fold_binary(name, header) == theirs.fold_binary(name, header)


def test_a_short_header_is_written_without_the_folding_algorithm(monkeypatch):
    def no_folding(*args, **kwargs):
        raise AssertionError("folded")

    monkeypatch.setattr(Header, "encode", no_folding)
    assert AS_IS_WHEN_SHORT.fold_binary("Subject", "Autumn sale") == b"Subject: Autumn sale\n"
    link = "<https://clarion.example.com/u/" + "A" * 90 + ">"
    assert AS_IS_WHEN_SHORT.fold_binary("List-Unsubscribe", link) == (
        f"List-Unsubscribe: \n {link}\n".encode()
    )
    with pytest.raises(AssertionError, match="folded"):
        AS_IS_WHEN_SHORT.fold_binary("Subject", "Autumn sale " * 10)


@pytest.mark.parametrize("linesep", ["\n", "\r\n"])
def test_a_whole_email_has_the_bytes_djangos_policy_gives(linesep):
    long_link = "<https://clarion.example.com/u/" + "A" * 120 + ">"
    message = Message(
        delivery_id=3,
        to="Zo\u00eb Wren <zoe@example.com>",
        content={
            "subject": "\u00c9t\u00e9: up to 30% off, this week only, on everything we sell",
            "text": "Hello\n" + "long line " * 120,
            "html": "<p>Hello</p>",
        },
        headers={"List-Unsubscribe": long_link, "List-Unsubscribe-Post": "One-Click"},
    )
    built = EmailProvider(name="email", channel="email").build(message).message()
    assert {part.policy for part in built.walk()} == {AS_IS_WHEN_SHORT}
    ours = built.as_bytes(linesep=linesep)
    assert b'\nContent-Type: multipart/alternative; boundary="=_' in b"\n" + ours
    for part in built.walk():
        part.policy = compat32
    assert ours == built.as_bytes(linesep=linesep)
