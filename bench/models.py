"""The bare view's table: what one INSERT per request costs, with nothing else around it."""

from django.db import models


class BareEvent(models.Model):
    payload = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)
