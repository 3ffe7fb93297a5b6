"""Trial mode: make an admin login and an API key, and print both (make run calls this)."""

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from rest_framework_api_key.models import APIKey


class Command(BaseCommand):
    help = "Create (or reset) the demo admin user and a fresh demo API key, and print them."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")

    def handle(self, *args, username: str, **options):
        password = secrets.token_urlsafe(12)
        user, _ = get_user_model().objects.get_or_create(
            username=username, defaults={"email": f"{username}@example.com"}
        )
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        base = settings.PUBLIC_BASE_URL
        APIKey.objects.filter(name="demo").update(revoked=True)
        _, key = APIKey.objects.create_key(name="demo")
        self.stdout.write(
            "\n".join(
                [
                    "",
                    f"  Admin:   {base}/admin/",
                    f"           user {username}  password {password}",
                    f"  API key: {key}",
                    f"  Try:     curl -X POST {base}/api/v1/notifications/ \\",
                    f"             -H 'Authorization: Api-Key {key}' \\",
                    "             -H 'Content-Type: application/json' \\",
                    """             -d '{"type": "order-shipped", "recipients": [{"external_id": """
                    """"42", "email": "ada@example.com"}], "data": {"order_id": "A-1001"}}'""",
                    "",
                ]
            )
        )
