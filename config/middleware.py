"""Django's middleware as Clarion needs it."""

from __future__ import annotations

from django.middleware import common


class CommonMiddleware(common.CommonMiddleware):
    """Django's, but the API never answers with a redirect to the path with its slash.

    A client following that 301 sends its POST again as a GET, without the body; the API
    answers a JSON 404 that names the path to use instead (notifications/api/errors.py).
    """

    def should_redirect_with_slash(self, request) -> bool:
        if request.path_info.startswith("/api/"):
            return False
        return super().should_redirect_with_slash(request)
