"""API-key authentication: ``Authorization: Api-Key <key>``, keys stored hashed.

djangorestframework-api-key stores only a hash and a prefix; this authenticates the
request with it so ``request.auth`` is the APIKey, and a missing or bad key is a 401.
"""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser
from rest_framework import authentication, exceptions, permissions
from rest_framework_api_key.models import APIKey

KEYWORD = "Api-Key"


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode(errors="replace")
        if not header:
            return None
        keyword, _, key = header.partition(" ")
        if keyword != KEYWORD or not key.strip():
            raise exceptions.AuthenticationFailed("Send 'Authorization: Api-Key <key>'.")
        try:
            api_key = APIKey.objects.get_from_key(key.strip())
        except APIKey.DoesNotExist:
            raise exceptions.AuthenticationFailed("This API key is not valid.")
        if api_key.has_expired or api_key.revoked:
            raise exceptions.AuthenticationFailed("This API key is revoked or expired.")
        return AnonymousUser(), api_key

    def authenticate_header(self, request) -> str:
        return KEYWORD


class HasApiKey(permissions.BasePermission):
    def has_permission(self, request, view) -> bool:
        return isinstance(request.auth, APIKey)


def api_key_id(request) -> str:
    """The id of the calling API key (idempotency keys are scoped to it)."""
    return request.auth.id
