"""Inbound provider webhooks: Twilio status callbacks and replies (anymail's views do email).

Twilio signs each request (X-Twilio-Signature over the URL it called and the form fields);
without a valid signature nothing is read. Replays are harmless: see channels.feedback.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from twilio.request_validator import RequestValidator

from . import feedback


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


def _twilio_signed(request: HttpRequest) -> bool:
    if not settings.TWILIO_AUTH_TOKEN:
        return False
    # Twilio signs the public URL it called, which a proxy in front of Clarion may rewrite.
    url = settings.PUBLIC_BASE_URL + request.get_full_path()
    signature = request.headers.get("X-Twilio-Signature", "")
    return RequestValidator(settings.TWILIO_AUTH_TOKEN).validate(
        url, request.POST.dict(), signature
    )


def _require(request: HttpRequest, *fields: str) -> JsonResponse | None:
    if not _twilio_signed(request):
        return _error(403, "invalid_signature", "X-Twilio-Signature does not match")
    missing = [f for f in fields if not request.POST.get(f)]
    if missing:
        return _error(400, "invalid_payload", f"missing fields: {', '.join(missing)}")
    return None


@csrf_exempt
@require_POST
def twilio_status(request: HttpRequest) -> HttpResponse:
    problem = _require(request, "MessageSid", "MessageStatus")
    if problem:
        return problem
    feedback.sms_status(request.POST.dict())
    return HttpResponse(status=204)


@csrf_exempt
@require_POST
def twilio_inbound(request: HttpRequest) -> HttpResponse:
    problem = _require(request, "MessageSid", "From", "Body")
    if problem:
        return problem
    reply = feedback.sms_keyword(
        sender=request.POST["From"],
        body=request.POST["Body"],
        message_sid=request.POST["MessageSid"],
    )
    message = f"<Message>{escape(reply)}</Message>" if reply else ""
    return HttpResponse(
        f'<?xml version="1.0" encoding="UTF-8"?><Response>{message}</Response>',
        content_type="text/xml",
    )
