"""One JSON error shape for the whole API: {"error": {"code", "message", "fields"?}}."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from django.urls import is_valid_path
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


class ApiError(exceptions.APIException):
    """An error with an explicit machine-readable code."""

    def __init__(self, code: str, message: str, status_code: int = 400, fields=None):
        super().__init__(detail=message, code=code)
        self.status_code = status_code
        self.error_code = code
        self.fields = fields


_CODES = {
    status.HTTP_400_BAD_REQUEST: "invalid_request",
    status.HTTP_401_UNAUTHORIZED: "not_authenticated",
    status.HTTP_403_FORBIDDEN: "forbidden",
    status.HTTP_404_NOT_FOUND: "not_found",
    status.HTTP_405_METHOD_NOT_ALLOWED: "method_not_allowed",
    status.HTTP_406_NOT_ACCEPTABLE: "not_acceptable",
    status.HTTP_415_UNSUPPORTED_MEDIA_TYPE: "unsupported_media_type",
    status.HTTP_429_TOO_MANY_REQUESTS: "throttled",
}


def error_body(code: str, message: str, fields=None) -> dict:
    error = {"code": code, "message": message}
    if fields:
        error["fields"] = fields
    return {"error": error}


def exception_handler(exc, context):
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, ApiError):
        body = error_body(exc.error_code, str(exc.detail), exc.fields)
    elif isinstance(exc, exceptions.ValidationError):
        body = error_body("validation_error", "The request is not valid.", exc.detail)
    elif isinstance(exc, exceptions.ParseError):
        body = error_body("malformed_json", str(exc.detail))
    elif isinstance(exc, exceptions.AuthenticationFailed):
        # A key was sent and is wrong (not_authenticated: none was sent).
        body = error_body("authentication_failed", str(exc.detail))
    else:
        code = _CODES.get(response.status_code, "error")
        body = error_body(code, str(getattr(exc, "detail", exc)))
    return Response(body, status=response.status_code, headers=_passthrough(response))


def _passthrough(response) -> dict:
    return {k: v for k, v in response.items() if k in {"Retry-After", "WWW-Authenticate", "Allow"}}


# --- Errors Django answers before a view runs (config/urls.py's handlers) ----------------


def _api(request) -> bool:
    return request.path_info.startswith("/api/")


def not_found(request, exception=None):
    """A 404 outside any view (a path that matches no route): JSON under /api/."""
    if not _api(request):
        return defaults.page_not_found(request, exception)
    with_slash = f"{request.path_info}/"
    if not request.path_info.endswith("/") and is_valid_path(with_slash):
        message = f"No such resource; API paths end with a slash: {with_slash}"
    else:
        message = "No such resource."
    return JsonResponse(error_body("not_found", message), status=404)


def bad_request(request, exception=None):
    """A 400 outside any view: a body over DATA_UPLOAD_MAX_MEMORY_SIZE, a bad Host."""
    if not _api(request):
        return defaults.bad_request(request, exception)
    if isinstance(exception, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return JsonResponse(
            error_body("request_too_large", f"The body is larger than {limit} bytes."), status=413
        )
    return JsonResponse(error_body("invalid_request", "Bad request."), status=400)


def server_error(request):
    if not _api(request):
        return defaults.server_error(request)
    return JsonResponse(error_body("server_error", "Something went wrong on our side."), status=500)
