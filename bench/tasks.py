"""The peer most Django teams write first: one Celery task per recipient, calling send_mail."""

from celery import shared_task
from django.core.mail import send_mail
from django.template import engines

from notifications.models import Recipient

from .templates import HTML, SUBJECT, TEXT


@shared_task(name="bench.send_one", acks_late=True)
def send_one(recipient_id: int, data: dict) -> None:
    recipient = Recipient.objects.get(id=recipient_id)
    engine = engines["django"]
    context = {"data": data, "recipient": {"external_id": recipient.external_id}}
    send_mail(
        engine.from_string(SUBJECT).render(context),
        engine.from_string(TEXT).render(context),
        None,
        [recipient.email],
        html_message=engine.from_string(HTML).render(context),
    )
