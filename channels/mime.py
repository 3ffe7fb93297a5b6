"""Serialising an email's headers without folding those that need none.

Django builds messages under the standard library's ``compat32`` policy, which folds every
header through ``email.header.Header``: it splits the value into words and joins them again
even when the line already fits. That is two thirds of turning a campaign email into bytes.
A header whose value is printable ASCII and fits on one line comes out of that algorithm
exactly as it went in, and one such value with no space in it, too long for the line, comes
out whole on a continuation line: both are written directly. Anything else (a long value
with spaces, a non-ASCII value, a control character, a ``Header`` object) takes the
standard path.
"""

from __future__ import annotations

from email.policy import Compat32


class Compat32AsIsWhenShort(Compat32):
    """``compat32`` that writes a header needing no folding or encoding as it stands."""

    def _as_is(self, name: str, value) -> str | None:
        if not (
            isinstance(value, str)
            and self.max_line_length
            and value.isascii()
            # isprintable() refuses tabs and control characters: the standard path splits
            # lines at \v, \f and the like, and may refuse an embedded header.
            and value.isprintable()
        ):
            return None
        if len(name) + len(value) + 2 <= self.max_line_length:
            return f"{name}: {value}{self.linesep}"
        if value and " " not in value:
            # One word too long for the line (a List-Unsubscribe URL): the standard path
            # cannot split it, so it moves it whole to a continuation line.
            return f"{name}: {self.linesep} {value}{self.linesep}"
        return None

    def fold(self, name, value):
        as_is = self._as_is(name, value)
        return super().fold(name, value) if as_is is None else as_is

    def fold_binary(self, name, value):
        as_is = self._as_is(name, value)
        return super().fold_binary(name, value) if as_is is None else as_is.encode("ascii")


AS_IS_WHEN_SHORT = Compat32AsIsWhenShort()
