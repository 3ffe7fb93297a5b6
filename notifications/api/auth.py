"""API-key authentication: ``Authorization: Api-Key <key>``, keys stored hashed."""

from __future__ import annotations

from rest_framework_api_key.models import APIKey
from rest_framework_api_key.permissions import BaseHasAPIKey


class HasClarionApiKey(BaseHasAPIKey):
    model = APIKey
    message = "A valid API key is required: send 'Authorization: Api-Key <key>'."


def api_key_id(request) -> str:
    """The id of the API key that authenticated the request (idempotency keys are scoped to it)."""
    cached = getattr(request, "_clarion_api_key_id", None)
    if cached is None:
        key = HasClarionApiKey().get_key(request)
        cached = APIKey.objects.get_from_key(key).id if key else ""
        request._clarion_api_key_id = cached
    return cached
