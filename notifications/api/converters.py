"""Path converters of the API's URLs."""

from django.urls import register_converter


class ExternalIdConverter:
    """A recipient's external id in a path: no slash, no NUL (which PostgreSQL refuses).

    An id that cannot exist answers 404 before any query, never a server error.
    """

    regex = "[^/\x00]{1,255}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(ExternalIdConverter, "ext_id")
