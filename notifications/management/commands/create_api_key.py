"""Create an API key and print it once (only its hash is stored)."""

from django.core.management.base import BaseCommand
from rest_framework_api_key.models import APIKey


class Command(BaseCommand):
    help = "Create an API key named NAME and print it; it cannot be shown again."

    def add_arguments(self, parser):
        parser.add_argument("name")

    def handle(self, *args, name: str, **options):
        _, key = APIKey.objects.create_key(name=name)
        self.stdout.write(key)
