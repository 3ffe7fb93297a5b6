"""Inbound provider webhooks: Twilio status callbacks and replies, and email tracking.

Twilio signs each request (X-Twilio-Signature over the URL it called and the form fields);
without a valid signature nothing is read. Email tracking is anymail's view for the one ESP
Clarion sends through, behind HTTP basic auth. Replays are harmless: see channels.feedback.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from twilio.request_validator import RequestValidator

from . import feedback


def _anymail_tracking_views() -> dict[str, object]:
    from anymail.urls import urlpatterns

    suffix = "/tracking/"
    return {
        str(p.pattern).removesuffix(suffix): p.callback
        for p in urlpatterns
        if str(p.pattern).endswith(suffix)
    }


ANYMAIL_TRACKING = _anymail_tracking_views()


@csrf_exempt
def email_tracking(request: HttpRequest, esp: str) -> HttpResponse:
    """anymail's tracking view of the ESP in use; no other ESP's, and none without a secret.

    Without ANYMAIL_WEBHOOK_SECRET anymail only warns and takes the request: anyone could
    then bounce any address off the list. Other ESPs' views are not reachable at all: they
    answer nothing Clarion needs, and some fail without their own settings.
    """
    if esp != settings.EMAIL_TRACKING_ESP or esp not in ANYMAIL_TRACKING:
        return _error(404, "not_found", f"no email tracking for {esp!r} here")
    if not settings.ANYMAIL.get("WEBHOOK_SECRET"):
        return _error(403, "not_configured", "ANYMAIL_WEBHOOK_SECRET is not set")
    return ANYMAIL_TRACKING[esp](request)


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


def _twilio_signed(request: HttpRequest) -> bool:
    if not settings.TWILIO_AUTH_TOKEN:
        return False
    # Twilio signs the public URL it called, which a proxy in front of Clarion may rewrite.
    url = settings.PUBLIC_BASE_URL + request.get_full_path()
    signature = request.headers.get("X-Twilio-Signature", "")
    # The QueryDict itself: Twilio signs every value of a repeated field, .dict() keeps one.
    return RequestValidator(settings.TWILIO_AUTH_TOKEN).validate(url, request.POST, signature)


def _require(request: HttpRequest, *fields: str) -> JsonResponse | None:
    if not _twilio_signed(request):
        return _error(403, "invalid_signature", "X-Twilio-Signature does not match")
    missing = [f for f in fields if not request.POST.get(f)]
    if missing:
        return _error(400, "invalid_payload", f"missing fields: {', '.join(missing)}")
    sid = request.POST["MessageSid"]
    if len(sid) > 64 or not sid.isprintable():  # Twilio's are 34 characters
        return _error(400, "invalid_payload", "MessageSid is not a Twilio message id")
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
