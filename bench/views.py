"""The floor for API intake: parse JSON, one INSERT, answer 202. No auth, no validation."""

import json

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from .models import BareEvent


@csrf_exempt
def bare_insert(request):
    event = BareEvent.objects.create(payload=json.loads(request.body))
    return JsonResponse({"id": event.id}, status=202)
